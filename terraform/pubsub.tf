# Window messages: fanout publishes one per window; a push subscription delivers each to median.
#
# Why a Terraform-managed push subscription instead of a Pub/Sub event trigger on median: the
# subscription that Eventarc creates for a gen2 Pub/Sub trigger cannot be given a dead-letter
# policy (nor the ack deadline or retry backoff) from Terraform -- open provider issues
# https://github.com/hashicorp/terraform-provider-google/issues/25069 (cloudfunctions2 dead
# lettering) and https://github.com/hashicorp/terraform-provider-google/issues/17697 (Eventarc
# dead_letter_topic). The delivery contract (600 s ack deadline, retry backoff, dead-letter
# topic) therefore lives here, and median is an HTTP function (functions.tf) that receives the
# standard wrapped Pub/Sub push envelope, authenticated by an OIDC token.

resource "google_pubsub_topic" "windows" {
  #checkov:skip=CKV_GCP_83:Messages are window coordinates and job IDs, not data; Google-managed encryption is enough and CMEK would add a KMS key to manage and pay for.
  name    = "${var.name_prefix}-windows"
  project = var.project_id
  labels  = var.labels

  depends_on = [google_project_service.apis]
}

resource "google_pubsub_topic" "windows_dead_letter" {
  #checkov:skip=CKV_GCP_83:Same content as the windows topic: window coordinates, no data; Google-managed encryption is enough.
  name    = "${var.name_prefix}-windows-dead-letter"
  project = var.project_id
  labels  = var.labels

  depends_on = [google_project_service.apis]
}

resource "google_pubsub_subscription" "median_push" {
  name    = "${var.name_prefix}-median-push"
  project = var.project_id
  topic   = google_pubsub_topic.windows.id
  labels  = var.labels

  ack_deadline_seconds = local.ack_deadline_seconds
  # A window older than median accepts is dropped by median anyway: stop retrying it then.
  message_retention_duration = "${var.max_event_age_seconds}s"

  push_config {
    push_endpoint = google_cloudfunctions2_function.median.service_config[0].uri
    # The wrapped envelope ({"message": {...}, "subscription": ...}) is what median parses,
    # so no `no_wrapper` block.
    oidc_token {
      service_account_email = google_service_account.push.email
      audience              = google_cloudfunctions2_function.median.service_config[0].uri
    }
  }

  # A safety net only (issue 11): Cloud Run answers 429 to pushes beyond max instances x
  # concurrency, and each 429 counts as a delivery attempt, so this count is not the window's
  # failure budget. median counts its executed attempts and gives up after
  # TM_MAX_ATTEMPTS = median_max_attempts (validated below this figure, variables.tf).
  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.windows_dead_letter.id
    max_delivery_attempts = var.push_max_delivery_attempts
  }

  # Exponential backoff between deliveries, 10 s doubling up to 600 s by default: with 100
  # attempts a window refused every time is retried for sum(min(600, 10 x 2^(k-1)), k = 1..99)
  # = 56,430 s, about 15.7 hours, before the safety net fires; the message is retained 24 h
  # (max_event_age_seconds), so it is dead-lettered rather than silently expired.
  retry_policy {
    minimum_backoff = "${var.push_min_backoff_seconds}s"
    maximum_backoff = "${var.push_max_backoff_seconds}s"
  }

  # Never expire for inactivity: jobs may be weeks apart.
  expiration_policy {
    ttl = ""
  }

  lifecycle {
    precondition {
      condition     = var.push_min_backoff_seconds <= var.push_max_backoff_seconds
      error_message = "push_min_backoff_seconds must not exceed push_max_backoff_seconds."
    }
    precondition {
      condition     = var.median_timeout_seconds < local.ack_deadline_seconds
      error_message = "median_timeout_seconds must be below the 600 s ack deadline."
    }
  }

  depends_on = [
    google_cloud_run_v2_service_iam_member.median_push_invoker,
    google_service_account_iam_member.pubsub_agent_push_token_creator,
    google_pubsub_topic_iam_member.dead_letter_pubsub_agent_publisher,
  ]
}

# Windows Pub/Sub gave up on (push_max_delivery_attempts deliveries, 429 refusals included) land
# here; windows median gave up on (median_max_attempts executed failures) are recorded as failed
# in the work bucket and acknowledged instead. Inspect with
#   gcloud pubsub subscriptions pull <dead_letter_subscription> --limit 10
# and replay by publishing the same data and attributes to the windows topic.
resource "google_pubsub_subscription" "dead_letter_pull" {
  name    = "${var.name_prefix}-windows-dead-letter"
  project = var.project_id
  topic   = google_pubsub_topic.windows_dead_letter.id
  labels  = var.labels

  ack_deadline_seconds       = 60
  message_retention_duration = "${var.dead_letter_retention_days * 86400}s"
  retain_acked_messages      = false

  expiration_policy {
    ttl = ""
  }
}
