"""The foundation every other part stands on: errors, settings, logs, time, storage, the window grid."""
