"""Log lines: one JSON object per line, as Cloud Logging parses it."""

import json


def test_log_lines_are_json_with_the_job_fields_at_the_configured_level(capsys, monkeypatch):
    from temporal_median.base.logs import get_logger
    from temporal_median.base.settings import get_settings

    monkeypatch.setenv("TM_LOG_LEVEL", "WARNING")
    get_settings.cache_clear()
    try:
        log = get_logger("temporal_median.test-logs")
        log.info("not shown at WARNING")
        log.warning("tile slow", extra={"job_id": "job-1", "tile": "r000_c001", "fields": {"seconds": 2.5}})
    finally:
        get_settings.cache_clear()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines == [
        {"severity": "WARNING", "message": "tile slow", "job_id": "job-1", "tile": "r000_c001", "seconds": 2.5,
         "logger": "temporal_median.test-logs"}
    ]
