# Identities and least-privilege grants. Function identities get bucket- and topic-level roles
# only; the few project-level grants are roles that exist only at project level, plus one read
# grant of the build account limited by an IAM condition to a bucket Google creates on the first
# deploy (see Builds); each says why.

# ---- Service accounts: one per function, plus the push, trigger and build identities ----------

resource "google_service_account" "fanout" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-fanout"
  display_name = "temporal-median fanout function"
  depends_on   = [google_project_service.apis]
}

resource "google_service_account" "median" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-median"
  display_name = "temporal-median median function"
  depends_on   = [google_project_service.apis]
}

resource "google_service_account" "mosaic" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-mosaic"
  display_name = "temporal-median mosaic function"
  depends_on   = [google_project_service.apis]
}

# Identity in the OIDC token Pub/Sub attaches to each push to median.
resource "google_service_account" "push" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-push"
  display_name = "temporal-median Pub/Sub push to median"
  depends_on   = [google_project_service.apis]
}

# Identity Eventarc uses to deliver storage events to mosaic.
resource "google_service_account" "trigger" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-trigger"
  display_name = "temporal-median storage trigger of mosaic"
  depends_on   = [google_project_service.apis]
}

# Identity of the Cloud Build runs that build the function images (instead of the default
# compute service account, which may hold Editor).
resource "google_service_account" "build" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-build"
  display_name = "temporal-median function builds"
  depends_on   = [google_project_service.apis]
}

# ---- Google service agents --------------------------------------------------------------------

resource "google_project_service_identity" "pubsub" {
  provider = google-beta
  project  = var.project_id
  service  = "pubsub.googleapis.com"

  depends_on = [google_project_service.apis]
}

resource "google_project_service_identity" "eventarc" {
  provider = google-beta
  project  = var.project_id
  service  = "eventarc.googleapis.com"

  depends_on = [google_project_service.apis]
}

# The project number names the bucket Cloud Functions copies the sources to (see Builds below).
# depends_on: on a fresh project it is read after the APIs (Resource Manager among them) are on.
data "google_project" "this" {
  project_id = var.project_id
  depends_on = [google_project_service.apis]
}

data "google_storage_project_service_account" "gcs" {
  project    = var.project_id
  depends_on = [google_project_service.apis]
}

locals {
  fanout_member         = "serviceAccount:${google_service_account.fanout.email}"
  median_member         = "serviceAccount:${google_service_account.median.email}"
  mosaic_member         = "serviceAccount:${google_service_account.mosaic.email}"
  push_member           = "serviceAccount:${google_service_account.push.email}"
  trigger_member        = "serviceAccount:${google_service_account.trigger.email}"
  build_member          = "serviceAccount:${google_service_account.build.email}"
  pubsub_agent_member   = "serviceAccount:${google_project_service_identity.pubsub.email}"
  eventarc_agent_member = "serviceAccount:${google_project_service_identity.eventarc.email}"
  gcs_agent_member      = "serviceAccount:${data.google_storage_project_service_account.gcs.email_address}"
  input_bucket_readers  = var.grant_input_bucket_access ? { for pair in setproduct(var.input_buckets, ["fanout", "median"]) : "${pair[0]}/${pair[1]}" => { bucket = pair[0], function = pair[1] } } : {}
  function_members      = { fanout = local.fanout_member, median = local.median_member, mosaic = local.mosaic_member }
}

# ---- Input buckets: read scenes --------------------------------------------------------------

resource "google_storage_bucket_iam_member" "input_viewer" {
  for_each = local.input_bucket_readers

  bucket = each.value.bucket
  role   = "roles/storage.objectViewer"
  member = local.function_members[each.value.function]
}

# ---- Work bucket ------------------------------------------------------------------------------
# median reads manifests and cancel markers and writes tiles and error records, always with
# ifGenerationMatch=0 under names of their own (a redelivered window finds its tile already
# there, "exists" means done), so create + view are enough: it can neither overwrite nor delete.

resource "google_storage_bucket_iam_member" "work_median_creator" {
  bucket = google_storage_bucket.work.name
  role   = "roles/storage.objectCreator"
  member = local.median_member
}

resource "google_storage_bucket_iam_member" "work_median_viewer" {
  bucket = google_storage_bucket.work.name
  role   = "roles/storage.objectViewer"
  member = local.median_member
}

# fanout writes the manifest (create-only), and when a job is re-posted it deletes the cancel
# marker and the old error records and rewrites jobs/<id>/resume.json; deleting and overwriting
# need storage.objects.delete, which objectCreator lacks. objectUser grants object
# read/write/delete without objectAdmin's IAM-policy permissions. It also reads tiles and error
# records to report status.
resource "google_storage_bucket_iam_member" "work_fanout_user" {
  bucket = google_storage_bucket.work.name
  role   = "roles/storage.objectUser"
  member = local.fanout_member
}

# mosaic takes a lock (create with ifGenerationMatch=0), takes over a stale one (overwrite with
# ifGenerationMatch), deletes it when done and writes or clears jobs/<id>/mosaic-error records:
# objectUser, for the same reason as fanout.
resource "google_storage_bucket_iam_member" "work_mosaic_user" {
  bucket = google_storage_bucket.work.name
  role   = "roles/storage.objectUser"
  member = local.mosaic_member
}

# ---- Results bucket ---------------------------------------------------------------------------
# mosaic writes the COG, quicklook, VRT and job record; a retried mosaic overwrites them, hence
# objectUser. fanout reads the job record to report a finished job.

resource "google_storage_bucket_iam_member" "results_mosaic_user" {
  bucket = google_storage_bucket.results.name
  role   = "roles/storage.objectUser"
  member = local.mosaic_member
}

resource "google_storage_bucket_iam_member" "results_fanout_viewer" {
  bucket = google_storage_bucket.results.name
  role   = "roles/storage.objectViewer"
  member = local.fanout_member
}

# ---- Pub/Sub ----------------------------------------------------------------------------------

resource "google_pubsub_topic_iam_member" "windows_fanout_publisher" {
  project = var.project_id
  topic   = google_pubsub_topic.windows.name
  role    = "roles/pubsub.publisher"
  member  = local.fanout_member
}

# Dead lettering is done by the Pub/Sub service agent: it must publish to the dead-letter topic
# and subscribe to (acknowledge on) the source subscription.
resource "google_pubsub_topic_iam_member" "dead_letter_pubsub_agent_publisher" {
  project = var.project_id
  topic   = google_pubsub_topic.windows_dead_letter.name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_agent_member
}

resource "google_pubsub_subscription_iam_member" "median_push_pubsub_agent_subscriber" {
  project      = var.project_id
  subscription = google_pubsub_subscription.median_push.name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent_member
}

# The Pub/Sub service agent mints the push OIDC tokens for the push identity. Projects created
# since April 2021 have this implicitly; granting it on this one service account is harmless
# there and required on older projects
# (https://cloud.google.com/pubsub/docs/authenticate-push-subscriptions).
resource "google_service_account_iam_member" "pubsub_agent_push_token_creator" {
  service_account_id = google_service_account.push.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent_member
}

# The storage trigger delivers to mosaic through a Pub/Sub push subscription that Eventarc
# creates, with an OIDC token of the trigger account: the same Pub/Sub service agent mints it,
# so the same grant is needed on that account in projects whose agent predates April 2021
# (issue 11; https://cloud.google.com/eventarc/docs/roles-permissions grants it project-wide,
# this grant is on the one account; https://cloud.google.com/pubsub/docs/authenticate-push-subscriptions).
resource "google_service_account_iam_member" "pubsub_agent_trigger_token_creator" {
  service_account_id = google_service_account.trigger.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent_member
}

# ---- Invokers ---------------------------------------------------------------------------------
# A gen2 function is served by a Cloud Run service of the same name; run.invoker on it is what
# admits a caller.

resource "google_cloud_run_v2_service_iam_member" "fanout_invoker" {
  for_each = toset(var.invoker_members)

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.fanout.name
  role     = "roles/run.invoker"
  member   = each.value
}

resource "google_cloud_run_v2_service_iam_member" "median_push_invoker" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.median.name
  role     = "roles/run.invoker"
  member   = local.push_member
}

resource "google_cloud_run_v2_service_iam_member" "mosaic_trigger_invoker" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.mosaic.name
  role     = "roles/run.invoker"
  member   = local.trigger_member
}

# ---- Storage trigger (Eventarc) ---------------------------------------------------------------

# eventarc.eventReceiver exists only at project level.
resource "google_project_iam_member" "trigger_event_receiver" {
  project = var.project_id
  role    = "roles/eventarc.eventReceiver"
  member  = local.trigger_member
}

# Cloud Storage publishes its events to the Pub/Sub topic Eventarc creates; the grant is
# project-level because that topic does not exist until the trigger does.
resource "google_project_iam_member" "gcs_agent_pubsub_publisher" {
  project = var.project_id
  role    = "roles/pubsub.publisher"
  member  = local.gcs_agent_member
}

# Normally granted automatically when the agent is created; granting it explicitly makes a
# fresh project deterministic.
resource "google_project_iam_member" "eventarc_agent" {
  #checkov:skip=CKV_GCP_49:The member is Google's Eventarc service agent and the role is the one Google grants it automatically on creation; no user or workload identity gains impersonation rights.
  project = var.project_id
  role    = "roles/eventarc.serviceAgent"
  member  = local.eventarc_agent_member
}

# First apply on a fresh project: the Eventarc service agent and the grants above take minutes
# to propagate, and creating the trigger before then fails with "Permission denied while using
# the Eventarc Service Agent" (https://github.com/hashicorp/terraform-provider-google/issues/25294,
# https://github.com/hashicorp/terraform-provider-google/issues/14584). Wait once, on creation.
resource "time_sleep" "service_agent_iam_propagation" {
  create_duration = var.iam_propagation_wait

  depends_on = [
    google_project_iam_member.eventarc_agent,
    google_project_iam_member.gcs_agent_pubsub_publisher,
    google_project_iam_member.trigger_event_receiver,
    google_project_service_identity.pubsub,
    google_service_account_iam_member.pubsub_agent_trigger_token_creator,
  ]
}

# ---- Builds -----------------------------------------------------------------------------------
# Each build runs as the build account. It must read the source zip, write the image, write logs.

# Our zips are uploaded here (functions.tf). Google's build documentation asks for Storage Object
# Admin "for retrieving the function source from the Cloud Storage bucket"
# (https://cloud.google.com/functions/docs/securing/build-custom-sa,
# https://cloud.google.com/run/docs/configuring/services/build-service-account; its newer form,
# roles/run.builder on the project, carries object access to every bucket of the project). So
# objectAdmin, but least privilege by scope: on this bucket alone, which holds nothing but the
# zips rebuilt from the repository on every apply.
resource "google_storage_bucket_iam_member" "build_sources_admin" {
  bucket = google_storage_bucket.sources.name
  role   = "roles/storage.objectAdmin"
  member = local.build_member
}

# ...but Cloud Functions gen2 first copies each zip into its own bucket,
# gcf-v2-sources-<PROJECT_NUMBER>-<REGION> (https://cloud.google.com/functions/docs/building),
# and Cloud Build fetches it from there. Without read access there every build fails with
# "Access to bucket gcf-v2-sources-... denied. You must grant Storage Object Viewer permission"
# (issue 11; https://github.com/hashicorp/terraform-provider-google/issues/20571, and
# https://github.com/GoogleCloudPlatform/magic-modules/pull/11324 added the same missing grant to
# the provider's own test). That bucket is created by the first deploy, so it cannot carry a
# bucket-level grant before it. The provider's builder example grants storage.objectAdmin on the
# whole project; this is narrower: objectViewer (read only), at project level but limited by an
# IAM condition to that one bucket and its objects (Cloud Storage resource names:
# projects/_/buckets/BUCKET and projects/_/buckets/BUCKET/objects/OBJECT,
# https://cloud.google.com/iam/docs/conditions-resource-attributes). An exact
# bucket name plus "/" keeps e.g. europe-west10's bucket out of a europe-west1 grant. Viewer, not
# the documented objectAdmin: that bucket is shared with every other gen2 function of the project
# in the region, a build runs third-party code (pip installs), and the build's own error names
# the permission it needs there: "You must grant Storage Object Viewer permission" (#20571).
resource "google_project_iam_member" "build_gcf_sources_viewer" {
  project = var.project_id
  role    = "roles/storage.objectViewer"
  member  = local.build_member

  condition {
    title       = "gcf-v2-sources-${var.region}"
    description = "Only the bucket Cloud Functions copies function sources to in ${var.region}."
    expression  = "resource.name == \"projects/_/buckets/${local.gcf_sources_bucket_name}\" || resource.name.startsWith(\"projects/_/buckets/${local.gcf_sources_bucket_name}/\")"
  }
}

locals {
  gcf_sources_bucket_name = "gcf-v2-sources-${data.google_project.this.number}-${var.region}"
}

resource "google_artifact_registry_repository_iam_member" "build_writer" {
  project    = var.project_id
  location   = google_artifact_registry_repository.functions.location
  repository = google_artifact_registry_repository.functions.name
  role       = "roles/artifactregistry.writer"
  member     = local.build_member
}

# Build logs: Cloud Logging grants writing only at project (or folder/org) level.
resource "google_project_iam_member" "build_log_writer" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = local.build_member
}

# Grants to a new service account take a while to propagate; a build started right after them
# fails to fetch its source or push its image. The provider's gen2 builder example waits 60 s and
# failed about half its runs for it (TestAccCloudfunctions2function_cloudfunctions2BasicBuilderExample,
# https://github.com/hashicorp/terraform-provider-google/issues/20571); the provider's team raised
# the same wait in its build-service-account test from 60 to 120 s
# (https://github.com/GoogleCloudPlatform/magic-modules/pull/11909). Hence
# build_iam_propagation_seconds, 120 by default. Every function depends on this wait (issue 11).
# triggers: the wait runs again when a grant is replaced by another (a new build account after a
# name_prefix change, a renamed bucket), not on every apply.
resource "time_sleep" "build_iam_propagation" {
  create_duration = "${var.build_iam_propagation_seconds}s"

  triggers = {
    sources_admin      = google_storage_bucket_iam_member.build_sources_admin.id
    gcf_sources_viewer = google_project_iam_member.build_gcf_sources_viewer.id
    registry_writer    = google_artifact_registry_repository_iam_member.build_writer.id
    log_writer         = google_project_iam_member.build_log_writer.id
  }

  depends_on = [
    google_storage_bucket_iam_member.build_sources_admin,
    google_project_iam_member.build_gcf_sources_viewer,
    google_artifact_registry_repository_iam_member.build_writer,
    google_project_iam_member.build_log_writer,
  ]
}
