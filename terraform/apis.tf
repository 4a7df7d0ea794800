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
