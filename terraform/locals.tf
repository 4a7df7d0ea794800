# Names and settings shared by several files.
locals {
  # Bucket names are global: the project ID makes them unique.
  work_bucket_name    = "${var.project_id}-${var.name_prefix}-work"
  results_bucket_name = "${var.project_id}-${var.name_prefix}-results"
  sources_bucket_name = "${var.project_id}-${var.name_prefix}-sources"

  # Function directory under functions/ and its Python entry point.
  functions = {
    fanout = { entry_point = "fanout" }
    median = { entry_point = "median" }
    mosaic = { entry_point = "mosaic" }
  }

  # Byte-code caches are rebuilt on the platform; shipping them only changes the archive hash.
  source_excludes = ["**/__pycache__", "**/*.pyc"]

  # Pub/Sub delivery to median: the course's ack deadline. The attempt counts are variables
  # (median_max_attempts, push_max_delivery_attempts; see variables.tf).
  ack_deadline_seconds = 600

  # The environment every function reads (temporal_median/base/settings.py documents each variable).
  function_env = {
    GOOGLE_CLOUD_PROJECT     = var.project_id
    TM_WINDOWS_TOPIC         = google_pubsub_topic.windows.name
    TM_WORK_URL              = "gs://${google_storage_bucket.work.name}"
    TM_RESULTS_URL           = "gs://${google_storage_bucket.results.name}"
    TM_MAX_INPUTS            = tostring(var.max_inputs)
    TM_MAX_WINDOWS           = tostring(var.max_windows)
    TM_MAX_EVENT_AGE_SECONDS = tostring(var.max_event_age_seconds)
    # median gives a window up after this many EXECUTED attempts (429 refusals by Cloud Run are
    # not counted), records it as failed and acknowledges it; fanout's status reads the same
    # figure. Below the subscription's push_max_delivery_attempts, a safety net (issue 11).
    TM_MAX_ATTEMPTS = tostring(var.median_max_attempts)
    # A lease: the holder renews the mosaic lock every third of this; older is stale.
    TM_MOSAIC_LOCK_SECONDS = tostring(var.mosaic_lock_seconds)
    TM_READ_THREADS        = tostring(var.read_threads)
    # The instance sizes the job record's cost estimate prices (temporal_median/job/cost.py).
    TM_MEDIAN_CPU    = var.median_cpu
    TM_MEDIAN_MEMORY = var.median_memory
    TM_MOSAIC_CPU    = var.mosaic_cpu
    TM_MOSAIC_MEMORY = var.mosaic_memory
    TM_LOG_LEVEL     = var.log_level
    # GDAL: use the metadata server's credentials for gs:// (the course needed this), and do not
    # list a scene's directory on open (the inputs folder holds 216 scenes).
    CPL_MACHINE_IS_GCE           = "YES"
    GDAL_DISABLE_READDIR_ON_OPEN = "EMPTY_DIR"
  }

  # numba caches compiled kernels on disk; /tmp is the only writable place in the container.
  median_env = merge(local.function_env, { NUMBA_CACHE_DIR = "/tmp/numba" })
}
