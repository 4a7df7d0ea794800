# Terraform and provider versions, bounded so that a future major release cannot change
# argument names or defaults under us without a deliberate bump here.
terraform {
  # >= 1.9: variables.tf validates memory with CPU and push_max_delivery_attempts against
  # median_max_attempts, and a validation rule may name another variable only since 1.9
  # (https://github.com/hashicorp/terraform/releases/tag/v1.9.0). Older versions refuse those
  # rules at init instead of silently skipping them.
  required_version = ">= 1.9.0, < 2.0.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.0.0, < 7.0.0"
    }
    # Only for google_project_service_identity (the Pub/Sub and Eventarc service agents).
    google-beta = {
      source  = "hashicorp/google-beta"
      version = ">= 6.0.0, < 7.0.0"
    }
    # 2.5 brought doublestar globs in `excludes` and `exclude_symlink_directories`.
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.5.0, < 3.0.0"
    }
    # time_sleep: waits for IAM grants to new service agents to propagate (first apply only).
    time = {
      source  = "hashicorp/time"
      version = ">= 0.9.0, < 1.0.0"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}

provider "google-beta" {
  project = var.project_id
  region  = var.region
}
