# APIs the pipeline needs. disable_on_destroy = false: `terraform destroy` must not switch off an
# API that other things in the project may use.
#
# terraform_checks/apis.py holds the table "resource type -> APIs it calls" (RESOURCE_APIS) and
# tests/test_terraform.py fails when a type used here is missing from it or needs an API this
# list lacks. cloudresourcemanager was missing (issue 11): google_project_iam_member and
# data.google_project call the Resource Manager API
# (https://cloud.google.com/resource-manager/reference/rest/v1/projects/setIamPolicy).
# serviceusage.googleapis.com, which enables the others, is on in every project and cannot be
# enabled through itself, so it is not listed. cloudquotas: quota.tf reads Cloud Run's quotas.
#
# FIRST DEPLOY STEP, before `terraform apply`:
#
#   gcloud services enable cloudresourcemanager.googleapis.com --project PROJECT_ID
#
# google_project_service enables an API and then reads it back, and that read first gets the
# project from the Resource Manager API (resourceGoogleProjectServiceRead calls Projects.Get,
# google/services/resourcemanager/resource_google_project_service.go in provider v6.50). The
# provider does not retry a 403 "API has not been used in project ... or it is disabled" (none of
# its default retry predicates, google/transport/error_retry_predicates.go, matches it), so on a
# project where Resource Manager is off, every API below -- cloudresourcemanager's own read
# included, as the API takes a while to come on -- can fail on the first apply. Enabled
# beforehand, it is a no-op here; it stays in the list so the configuration still says it needs it
# (and so destroy leaves it on).
locals {
  apis = toset([
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudquotas.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "eventarc.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "storage.googleapis.com",
  ])
}

resource "google_project_service" "apis" {
  for_each = local.apis

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}
