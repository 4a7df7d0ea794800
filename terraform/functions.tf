# The three Cloud Functions (2nd gen), their source archives and the image repository.

# One zip per function: main.py, requirements.txt and the shared core package. functions/<name>/
# holds a symlink temporal_median -> ../../temporal_median; archive_file follows symlinked
# directories unless exclude_symlink_directories is true, so the core is copied into each zip.
# tests/test_terraform.py rebuilds each zip the same way and checks the core is in it.
data "archive_file" "function" {
  for_each = local.functions

  type                        = "zip"
  source_dir                  = "${path.module}/../functions/${each.key}"
  output_path                 = "${path.module}/build/${each.key}.zip"
  excludes                    = local.source_excludes
  exclude_symlink_directories = false
  output_file_mode            = "0644"
}

# The archive's hash is in the object name: a code change is a new object, hence a new
# storage_source, hence a rebuild and redeploy of that function only.
resource "google_storage_bucket_object" "function_source" {
  for_each = local.functions

  name         = "${each.key}/${data.archive_file.function[each.key].output_md5}.zip"
  bucket       = google_storage_bucket.sources.name
  source       = data.archive_file.function[each.key].output_path
  content_type = "application/zip"
}

# Our own repository for the built images (every function's build_config.docker_repository), so
# the build service account can be granted write access on it alone (otherwise Cloud Functions
# creates gcf-artifacts and the build needs a project-wide Artifact Registry role).
#
# Every deploy of a changed function pushes a new image, and a repository keeps them all (and
# bills their storage) unless it has cleanup policies
# (https://cloud.google.com/artifact-registry/docs/repositories/cleanup-policy). KEEP policies
# take precedence over DELETE ones: each image keeps its image_keep_versions most recent versions
# whatever their age (the deployed image is the newest of its function, so it is never deleted),
# and older versions go after image_retention_days. cleanup_policy_dry_run = false: the policies
# delete, they do not only log.
resource "google_artifact_registry_repository" "functions" {
  #checkov:skip=CKV_GCP_84:Images are built from this public repository's code; Google-managed encryption is enough and CMEK would add a KMS key to manage.
  project       = var.project_id
  location      = var.region
  repository_id = "${var.name_prefix}-functions"
  description   = "Images of the temporal-median functions, built by Cloud Build."
  format        = "DOCKER"
  labels        = var.labels

  cleanup_policy_dry_run = false

  cleanup_policies {
    id     = "keep-most-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = var.image_keep_versions
    }
  }

  cleanup_policies {
    id     = "delete-older"
    action = "DELETE"
    condition {
      tag_state  = "ANY"
      older_than = "${var.image_retention_days * 86400}s"
    }
  }

  depends_on = [google_project_service.apis]
}

# fanout: HTTP, authenticated callers only (run.invoker granted to var.invoker_members in iam.tf).
# Ingress ALLOW_ALL so a user's curl reaches it; IAM still rejects unauthenticated requests.
resource "google_cloudfunctions2_function" "fanout" {
  #checkov:skip=CKV_GCP_124:fanout is the pipeline's public entry point and must be reachable by a user's curl; IAM admits only var.invoker_members (validated to exclude allUsers and allAuthenticatedUsers).
  name        = "${var.name_prefix}-fanout"
  project     = var.project_id
  location    = var.region
  description = "Starts a temporal-median job: validates the inputs, writes the manifest, publishes one message per window; reports job status."
  labels      = var.labels

  build_config {
    runtime           = "python311"
    entry_point       = local.functions.fanout.entry_point
    service_account   = google_service_account.build.id
    docker_repository = google_artifact_registry_repository.functions.id
    source {
      storage_source {
        bucket = google_storage_bucket.sources.name
        object = google_storage_bucket_object.function_source["fanout"].name
      }
    }
  }

  service_config {
    available_memory                 = var.fanout_memory
    available_cpu                    = "1"
    timeout_seconds                  = 300
    min_instance_count               = 0
    max_instance_count               = var.fanout_max_instances
    max_instance_request_concurrency = 1
    ingress_settings                 = "ALLOW_ALL"
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.fanout.email
    environment_variables            = local.function_env
  }

  depends_on = [
    google_project_service.apis,
    # The build account's grants, and the wait for them to propagate (iam.tf, issue 11).
    time_sleep.build_iam_propagation,
    # Stops before any build when a function would exceed Cloud Run's regional quota (quota.tf).
    terraform_data.run_quota,
  ]
}

# median: one window per request. HTTP-triggered (not a Pub/Sub event trigger) so the push
# subscription in pubsub.tf, with its dead-letter policy, is the only delivery path. Ingress
# internal-only: Pub/Sub push from the same project counts as an internal source
# (https://cloud.google.com/run/docs/securing/ingress), and IAM admits only the push identity.
resource "google_cloudfunctions2_function" "median" {
  name        = "${var.name_prefix}-median"
  project     = var.project_id
  location    = var.region
  description = "Computes the temporal median of one window; receives Pub/Sub push envelopes."
  labels      = var.labels

  build_config {
    runtime           = "python311"
    entry_point       = local.functions.median.entry_point
    service_account   = google_service_account.build.id
    docker_repository = google_artifact_registry_repository.functions.id
    source {
      storage_source {
        bucket = google_storage_bucket.sources.name
        object = google_storage_bucket_object.function_source["median"].name
      }
    }
  }

  service_config {
    available_memory                 = var.median_memory
    available_cpu                    = var.median_cpu
    timeout_seconds                  = var.median_timeout_seconds
    min_instance_count               = 0
    max_instance_count               = var.median_max_instances
    max_instance_request_concurrency = var.median_concurrency
    ingress_settings                 = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.median.email
    environment_variables            = local.median_env
  }

  depends_on = [
    google_project_service.apis,
    # The build account's grants, and the wait for them to propagate (iam.tf, issue 11).
    time_sleep.build_iam_propagation,
    # Stops before any build when a function would exceed Cloud Run's regional quota (quota.tf).
    terraform_data.run_quota,
  ]
}

# mosaic: fires on every object finalized in the WORK bucket, where median's tiles land; it
# returns at once unless the job's last tile is in, then builds the COG, quicklook and VRT under
# a lock. Direct GCS events cannot filter on an object prefix, so the code ignores non-tiles.
# Ingress internal-only: Eventarc deliveries count as internal sources.
resource "google_cloudfunctions2_function" "mosaic" {
  name        = "${var.name_prefix}-mosaic"
  project     = var.project_id
  location    = var.region
  description = "Builds the job's mosaic (COG, quicklook PNG, VRT, job record) once every tile has landed."
  labels      = var.labels

  build_config {
    runtime           = "python311"
    entry_point       = local.functions.mosaic.entry_point
    service_account   = google_service_account.build.id
    docker_repository = google_artifact_registry_repository.functions.id
    source {
      storage_source {
        bucket = google_storage_bucket.sources.name
        object = google_storage_bucket_object.function_source["mosaic"].name
      }
    }
  }

  service_config {
    available_memory                 = var.mosaic_memory
    available_cpu                    = var.mosaic_cpu
    timeout_seconds                  = 540 # the maximum for event-driven gen2 functions
    min_instance_count               = 0
    max_instance_count               = var.mosaic_max_instances
    max_instance_request_concurrency = 1
    ingress_settings                 = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.mosaic.email
    environment_variables            = local.function_env
  }

  event_trigger {
    trigger_region        = var.region # the work bucket's region
    event_type            = "google.cloud.storage.object.v1.finalized"
    retry_policy          = "RETRY_POLICY_RETRY"
    service_account_email = google_service_account.trigger.email
    event_filters {
      attribute = "bucket"
      value     = google_storage_bucket.work.name
    }
  }

  depends_on = [
    google_project_service.apis,
    # The build account's grants, and the wait for them to propagate (iam.tf, issue 11).
    time_sleep.build_iam_propagation,
    time_sleep.service_agent_iam_propagation,
    # Stops before any build when a function would exceed Cloud Run's regional quota (quota.tf).
    terraform_data.run_quota,
  ]
}
