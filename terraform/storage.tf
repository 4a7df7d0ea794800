# Buckets: work (manifests, tiles, error records, locks), results (mosaics), function sources.
# All private: uniform bucket-level access and public access prevention enforced.

resource "google_storage_bucket" "work" {
  #checkov:skip=CKV_GCP_62:Legacy usage logs add a log bucket per deployment; object access is audited through Cloud Audit Logs (enable Data Access logs for storage.googleapis.com if required).
  #checkov:skip=CKV_GCP_78:Intermediates only: versioning would keep every overwritten or expired tile and bill for it; results live in the versioned results bucket.
  name                        = local.work_bucket_name
  project                     = var.project_id
  location                    = upper(var.region) # single region: the storage trigger must be in the bucket's region
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy
  labels                      = var.labels

  versioning {
    enabled = false
  }

  # Soft delete would bill another 7 days for every expired intermediate.
  soft_delete_policy {
    retention_duration_seconds = 0
  }

  lifecycle_rule {
    condition {
      age            = var.intermediate_retention_days
      matches_prefix = ["jobs/"]
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_storage_bucket" "results" {
  #checkov:skip=CKV_GCP_62:Legacy usage logs add a log bucket per deployment; object access is audited through Cloud Audit Logs (enable Data Access logs for storage.googleapis.com if required).
  name                        = local.results_bucket_name
  project                     = var.project_id
  location                    = upper(var.region)
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy
  labels                      = var.labels

  # A rerun overwrites a result: keep the previous version for a while.
  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_retention_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_storage_bucket" "sources" {
  #checkov:skip=CKV_GCP_62:Holds only build inputs derived from this repository; access is audited through Cloud Audit Logs.
  name                        = local.sources_bucket_name
  project                     = var.project_id
  location                    = upper(var.region)
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  # Only zips rebuilt from the repository on every apply: nothing to lose.
  force_destroy = true
  labels        = var.labels

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_retention_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}
