"""The job model: the request, ids, where objects live, window messages, the manifest, the cost."""
