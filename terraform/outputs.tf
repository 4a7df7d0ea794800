# What a user needs after `terraform apply`: where to send a job, where things land.

output "fanout_url" {
  description = "URL of the fanout function (authenticated: send an identity token of a member of invoker_members)."
  value       = google_cloudfunctions2_function.fanout.service_config[0].uri
}

output "median_url" {
  description = "URL of the median function (internal ingress; only the push subscription's identity may invoke it)."
  value       = google_cloudfunctions2_function.median.service_config[0].uri
}

output "work_bucket" {
  description = "Bucket of manifests, tiles, error records and locks (objects under jobs/ expire after intermediate_retention_days); mosaic is triggered by objects landing here."
  value       = google_storage_bucket.work.name
}

output "results_bucket" {
  description = "Bucket where mosaic writes each job's COG, quicklook PNG, VRT and job record."
  value       = google_storage_bucket.results.name
}

output "sources_bucket" {
  description = "Bucket holding the function source archives."
  value       = google_storage_bucket.sources.name
}

output "windows_topic" {
  description = "Pub/Sub topic fanout publishes one message per window to."
  value       = google_pubsub_topic.windows.name
}

output "median_push_subscription" {
  description = "Push subscription delivering window messages to median (600 s ack deadline, backoff 10-600 s; dead letter after push_max_delivery_attempts deliveries, a safety net behind median's own median_max_attempts)."
  value       = google_pubsub_subscription.median_push.name
}

output "dead_letter_topic" {
  description = "Topic receiving windows Pub/Sub gave up on after push_max_delivery_attempts deliveries (429 refusals included)."
  value       = google_pubsub_topic.windows_dead_letter.name
}

output "dead_letter_subscription" {
  description = "Pull subscription on the dead-letter topic: inspect failed windows with `gcloud pubsub subscriptions pull`, replay by republishing to windows_topic."
  value       = google_pubsub_subscription.dead_letter_pull.name
}

output "run_job_command" {
  description = "A ready curl that starts a job on the course's data (T31TCJ, 2023) as the gcloud user, who must be in invoker_members."
  value       = "curl -X POST \"${google_cloudfunctions2_function.fanout.service_config[0].uri}\" -H \"Authorization: Bearer $(gcloud auth print-identity-token)\" -H 'Content-Type: application/json' -d '{\"inputs\": \"gs://tb-be-bigdata/t31tcj/\"}'"
}
