# Inputs of the deployment. Every variable is typed and described; values that must come from
# a fixed set or a range are validated here so a typo fails at plan time, not mid-apply.

variable "project_id" {
  type        = string
  description = "ID of the GCP project to deploy into (billing enabled)."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a GCP project ID: 6-30 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "region" {
  type        = string
  description = "Region of the functions, the buckets and the storage trigger. Pick the region of the input data (tb-be-bigdata is in Europe) to avoid egress."
  default     = "europe-west1"

  validation {
    condition     = can(regex("^(africa|asia|australia|europe|me|northamerica|southamerica|us)-[a-z]+[0-9]+$", var.region))
    error_message = "region must be a single GCP region such as europe-west1 (no multi-regions: the storage trigger must be in the bucket's region)."
  }
}

variable "name_prefix" {
  type        = string
  description = "Prefix of every resource name (functions, topics, service accounts, buckets after the project ID)."
  default     = "tm"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,13}$", var.name_prefix))
    error_message = "name_prefix must be 1-14 lowercase letters, digits or hyphens, starting with a letter (service account IDs are limited to 30 characters)."
  }
}

variable "labels" {
  type        = map(string)
  description = "Labels added to the buckets, topics and functions."
  default     = { app = "temporal-median" }
}

variable "invoker_members" {
  type        = list(string)
  description = "IAM members allowed to call the fanout function (run.invoker), e.g. [\"user:you@example.com\"]. Public members are refused."

  validation {
    condition     = length(var.invoker_members) > 0
    error_message = "invoker_members must name at least one member, e.g. [\"user:you@example.com\"]; the fanout function is never public."
  }

  # principalSet://goog/public:all is IAM's principal-identifier form of allUsers
  # (https://cloud.google.com/iam/docs/principal-identifiers).
  validation {
    condition = alltrue([
      for m in var.invoker_members : !contains(["allusers", "allauthenticatedusers", "principalset://goog/public:all"], lower(trimspace(m)))
    ])
    error_message = "invoker_members must not contain allUsers, allAuthenticatedUsers or principalSet://goog/public:all: the fanout function only accepts authenticated, named callers."
  }

  validation {
    condition = alltrue([
      for m in var.invoker_members : can(regex("^(user|group|serviceAccount|domain|principal|principalSet):.+$", m))
    ])
    error_message = "Each invoker member must look like user:EMAIL, group:EMAIL, serviceAccount:EMAIL, domain:DOMAIN, principal://... or principalSet://..."
  }
}

variable "input_buckets" {
  type        = list(string)
  description = "Buckets the jobs read scenes from. The default, the course bucket, is public."
  default     = ["tb-be-bigdata"]

  validation {
    condition     = alltrue([for b in var.input_buckets : can(regex("^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$", b))])
    error_message = "input_buckets must be bucket names (no gs:// prefix)."
  }
}

variable "grant_input_bucket_access" {
  type        = bool
  description = "Grant storage.objectViewer on each input bucket to fanout and median. Needs setIamPolicy on those buckets: leave false for public buckets you do not own (like tb-be-bigdata), set true for your own private inputs."
  default     = false
}

variable "force_destroy" {
  type        = bool
  description = "Let `terraform destroy` delete the work and results buckets even when they still hold objects. Off by default so results are never lost by accident."
  default     = false
}

variable "intermediate_retention_days" {
  type        = number
  description = "Days after which intermediate objects under jobs/ in the work bucket (manifests, tiles, error records, locks) are deleted."
  default     = 7

  validation {
    condition     = var.intermediate_retention_days >= 1 && var.intermediate_retention_days <= 365 && floor(var.intermediate_retention_days) == var.intermediate_retention_days
    error_message = "intermediate_retention_days must be a whole number of days between 1 and 365."
  }
}

variable "noncurrent_retention_days" {
  type        = number
  description = "Days an overwritten (noncurrent) version of a result or function source is kept before deletion."
  default     = 30

  validation {
    condition     = var.noncurrent_retention_days >= 1 && var.noncurrent_retention_days <= 365 && floor(var.noncurrent_retention_days) == var.noncurrent_retention_days
    error_message = "noncurrent_retention_days must be a whole number of days between 1 and 365."
  }
}

variable "fanout_memory" {
  type        = string
  description = "Memory of the fanout function (lists inputs, reads scene headers, writes the manifest)."
  default     = "1Gi"

  validation {
    condition     = contains(["512Mi", "1Gi", "2Gi", "4Gi"], var.fanout_memory)
    error_message = "fanout_memory must be one of 512Mi, 1Gi, 2Gi, 4Gi."
  }
}

# Max instances: Cloud Run checks max instances x CPU and x memory of a service against the
# region's allocation quotas when it creates the service, and refuses it otherwise ("Max instances
# must be set to N or fewer to set the requested total CPU", "For the specified value, maxScale
# may not exceed 10"); new projects have been seen with 20 vCPU and 40 GiB
# (https://github.com/googlecodelabs/feedback/issues/1856: "CpuAllocPerProjectRegion ... allowed:
# 20000", "MemAllocPerProjectRegion ... allowed: 42949672960";
# https://github.com/firebase/firebase-tools/pull/5867). The defaults fit that with all three
# functions at their maximum at once: fanout 2 x (1 vCPU, 1 GiB) + median 12 x (1 vCPU, 2 GiB) +
# mosaic 3 x (2 vCPU, 4 GiB) = 20 vCPU, 38 GiB. With more quota, raise median_max_instances (the
# course used 50): quota.tf checks every function against the region's quota before any is
# created, and warns when all of them together exceed it.
variable "fanout_max_instances" {
  type        = number
  description = "Most fanout instances at once (each 1 vCPU and fanout_memory). Counts against Cloud Run's regional CPU and memory quotas (see quota.tf)."
  default     = 2

  validation {
    condition     = var.fanout_max_instances >= 1 && var.fanout_max_instances <= 100 && floor(var.fanout_max_instances) == var.fanout_max_instances
    error_message = "fanout_max_instances must be a whole number between 1 and 100."
  }
}

variable "median_memory" {
  type        = string
  description = "Memory of one median worker. A 216 x 1024 x 1024 window reading gs:// inputs with 16 threads peaks at 950-1029 MiB per instance (worker + server + /tmp tile; bench/bench_memory.py): 1Gi would be at its limit, so 2Gi (the course's figure). Must suit median_cpu (see the validation below)."
  default     = "2Gi"

  validation {
    condition     = contains(["1Gi", "2Gi", "4Gi", "8Gi", "16Gi"], var.median_memory)
    error_message = "median_memory must be one of 1Gi, 2Gi, 4Gi, 8Gi, 16Gi."
  }

  # Memory and CPU are checked together: Cloud Run refuses some pairs only at apply time, after
  # the builds ran. Its table (https://cloud.google.com/run/docs/configuring/services/cpu and
  # https://cloud.google.com/run/docs/configuring/services/memory-limits): 1 vCPU takes up to
  # 4 GiB, 2 vCPU up to 8 GiB, 4 vCPU 2-16 GiB, 6 vCPU 4-24 GiB, 8 vCPU 4-32 GiB; that is, memory
  # at most 4 GiB per vCPU, and at least 2 GiB from 4 vCPU and 4 GiB from 6 vCPU. Fractional
  # CPUs (< 1) are not offered: they need the first-generation execution environment and
  # concurrency 1, and allow at most 1 GiB. A rule naming another variable needs Terraform >= 1.9
  # (versions.tf). try(): a malformed value is reported by the rules above, not twice.
  validation {
    condition = try(
      tonumber(trimsuffix(trimsuffix(var.median_memory, "Gi"), "Mi")) / (endswith(var.median_memory, "Mi") ? 1024 : 1) <= 4 * tonumber(var.median_cpu) &&
      tonumber(trimsuffix(trimsuffix(var.median_memory, "Gi"), "Mi")) / (endswith(var.median_memory, "Mi") ? 1024 : 1) >= lookup({ "4" = 2, "6" = 4, "8" = 4 }, var.median_cpu, 0),
      true,
    )
    error_message = "median_memory and median_cpu do not fit together: Cloud Run allows at most 4 GiB per vCPU (more than 4Gi needs median_cpu >= 2, more than 8Gi needs >= 4) and at least 2Gi with 4 vCPU, 4Gi with 8 vCPU."
  }
}

variable "median_cpu" {
  type        = string
  description = "vCPUs of one median worker. Checked together with median_memory: Cloud Run needs at least 2 vCPU above 4Gi and 4 above 8Gi, and at least 2Gi with 4 vCPU, 4Gi with 8."
  default     = "1"

  validation {
    condition     = contains(["1", "2", "4", "8"], var.median_cpu)
    error_message = "median_cpu must be one of 1, 2, 4, 8."
  }
}

variable "median_max_instances" {
  type        = number
  description = "Most median workers at once. A granule has 121 windows; each instance holds one window at a time. 12 fits a new project's Cloud Run quota (20 vCPU, 40 GiB per region) next to fanout and mosaic; the course used 50, which needs 50 vCPU and 100 GiB of quota with the default median_cpu and median_memory (quota.tf checks it)."
  default     = 12

  validation {
    condition     = var.median_max_instances >= 1 && var.median_max_instances <= 1000 && floor(var.median_max_instances) == var.median_max_instances
    error_message = "median_max_instances must be a whole number between 1 and 1000."
  }
}

variable "median_concurrency" {
  type        = number
  description = "Requests one median instance serves at once. 1 (the course's figure): a window needs the whole instance's memory and CPU."
  default     = 1

  validation {
    condition     = var.median_concurrency >= 1 && var.median_concurrency <= 8 && floor(var.median_concurrency) == var.median_concurrency
    error_message = "median_concurrency must be a whole number between 1 and 8."
  }
}

variable "median_timeout_seconds" {
  type        = number
  description = "Timeout of one median request. Must stay below the push subscription's 600 s ack deadline, or Pub/Sub redelivers a window that is still being computed."
  default     = 540

  validation {
    condition     = var.median_timeout_seconds >= 60 && var.median_timeout_seconds <= 540 && floor(var.median_timeout_seconds) == var.median_timeout_seconds
    error_message = "median_timeout_seconds must be a whole number between 60 and 540 (below the 600 s ack deadline)."
  }
}

variable "mosaic_memory" {
  type        = string
  description = "Memory of the mosaic function, which writes the full-granule COG (10980 x 10980 x 3 bytes, about 362 MB raw) and its quicklook. Must suit mosaic_cpu."
  default     = "4Gi"

  validation {
    condition     = contains(["2Gi", "4Gi", "8Gi", "16Gi"], var.mosaic_memory)
    error_message = "mosaic_memory must be one of 2Gi, 4Gi, 8Gi, 16Gi."
  }

  # The same Cloud Run memory/CPU table as median_memory's (see there).
  validation {
    condition = try(
      tonumber(trimsuffix(trimsuffix(var.mosaic_memory, "Gi"), "Mi")) / (endswith(var.mosaic_memory, "Mi") ? 1024 : 1) <= 4 * tonumber(var.mosaic_cpu) &&
      tonumber(trimsuffix(trimsuffix(var.mosaic_memory, "Gi"), "Mi")) / (endswith(var.mosaic_memory, "Mi") ? 1024 : 1) >= lookup({ "4" = 2, "6" = 4, "8" = 4 }, var.mosaic_cpu, 0),
      true,
    )
    error_message = "mosaic_memory and mosaic_cpu do not fit together: Cloud Run allows at most 4 GiB per vCPU (more than 4Gi needs mosaic_cpu >= 2, more than 8Gi needs >= 4) and at least 2Gi with 4 vCPU, 4Gi with 8 vCPU."
  }
}

variable "mosaic_cpu" {
  type        = string
  description = "vCPUs of the mosaic function (COG compression uses them). Checked together with mosaic_memory, as median_cpu is."
  default     = "2"

  validation {
    condition     = contains(["1", "2", "4", "8"], var.mosaic_cpu)
    error_message = "mosaic_cpu must be one of 1, 2, 4, 8."
  }
}

variable "mosaic_max_instances" {
  type        = number
  description = "Most mosaic instances at once. Every object landing in the work bucket fires an event; most return at once, one builds the mosaic under a lock, and an event refused while all are busy is retried by Eventarc. Each takes mosaic_cpu and mosaic_memory of Cloud Run's regional quotas (see quota.tf)."
  default     = 3

  validation {
    condition     = var.mosaic_max_instances >= 1 && var.mosaic_max_instances <= 100 && floor(var.mosaic_max_instances) == var.mosaic_max_instances
    error_message = "mosaic_max_instances must be a whole number between 1 and 100."
  }
}

variable "mosaic_lock_seconds" {
  type        = number
  description = "TM_MOSAIC_LOCK_SECONDS: the mosaic lock is a lease. Its holder renews it every third of this time; a lock not renewed for this long is stale and another mosaic takes it over. Short enough that a crashed mosaic blocks its job for about a minute, long enough for a few missed renewals."
  default     = 60

  validation {
    condition     = var.mosaic_lock_seconds >= 30 && var.mosaic_lock_seconds <= 540 && floor(var.mosaic_lock_seconds) == var.mosaic_lock_seconds
    error_message = "mosaic_lock_seconds must be a whole number between 30 and 540 (mosaic's timeout)."
  }
}

variable "log_level" {
  type        = string
  description = "TM_LOG_LEVEL of the functions."
  default     = "INFO"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR"], var.log_level)
    error_message = "log_level must be DEBUG, INFO, WARNING or ERROR."
  }
}

variable "max_inputs" {
  type        = number
  description = "TM_MAX_INPUTS: most scenes one job may have (a year of one granule is 216)."
  default     = 1000

  validation {
    condition     = var.max_inputs >= 1 && var.max_inputs <= 10000 && floor(var.max_inputs) == var.max_inputs
    error_message = "max_inputs must be a whole number between 1 and 10000."
  }
}

variable "max_windows" {
  type        = number
  description = "TM_MAX_WINDOWS: most windows (tiles) one job's output grid may have; an area's bbox and the resolution decide how many (a granule at 1024 px tiles is 121). fanout refuses a job above it."
  default     = 2500

  validation {
    condition     = var.max_windows >= 1 && var.max_windows <= 100000 && floor(var.max_windows) == var.max_windows
    error_message = "max_windows must be a whole number between 1 and 100000."
  }
}

variable "max_event_age_seconds" {
  type        = number
  description = "TM_MAX_EVENT_AGE_SECONDS: median drops window messages older than this; also the push subscription's message retention, so Pub/Sub stops retrying when median would refuse anyway."
  default     = 86400

  validation {
    condition     = var.max_event_age_seconds >= 600 && var.max_event_age_seconds <= 604800 && floor(var.max_event_age_seconds) == var.max_event_age_seconds
    error_message = "max_event_age_seconds must be a whole number between 600 (Pub/Sub's minimum retention) and 604800 (7 days)."
  }
}

variable "read_threads" {
  type        = number
  description = "TM_READ_THREADS: scenes one median worker reads concurrently."
  default     = 16

  validation {
    condition     = var.read_threads >= 1 && var.read_threads <= 64 && floor(var.read_threads) == var.read_threads
    error_message = "read_threads must be a whole number between 1 and 64."
  }
}

variable "push_min_backoff_seconds" {
  type        = number
  description = "Shortest wait before Pub/Sub redelivers a window that median failed."
  default     = 10

  validation {
    condition     = var.push_min_backoff_seconds >= 0 && var.push_min_backoff_seconds <= 600 && floor(var.push_min_backoff_seconds) == var.push_min_backoff_seconds
    error_message = "push_min_backoff_seconds must be a whole number between 0 and 600."
  }
}

variable "push_max_backoff_seconds" {
  type        = number
  description = "Longest wait before Pub/Sub redelivers a window that median failed."
  default     = 600

  validation {
    condition     = var.push_max_backoff_seconds >= 1 && var.push_max_backoff_seconds <= 600 && floor(var.push_max_backoff_seconds) == var.push_max_backoff_seconds
    error_message = "push_max_backoff_seconds must be a whole number between 1 and 600."
  }
}

# Delivery of windows to median. Cloud Run answers 429 to pushes beyond max instances x
# concurrency, and each 429 counts as a Pub/Sub delivery attempt, so the subscription's attempt
# count says nothing about how often a window was really computed. median therefore counts its
# own executed attempts (records in the work bucket): after median_max_attempts executed
# failures it records the window as failed and acknowledges it (issue 11). The subscription's
# dead letter is only a safety net, at Pub/Sub's maximum of 100 attempts (DeadLetterPolicy
# allows 5-100: https://cloud.google.com/pubsub/docs/reference/rest/v1/projects.subscriptions#DeadLetterPolicy).
variable "median_max_attempts" {
  type        = number
  description = "TM_MAX_ATTEMPTS: executed attempts of one window (refused 429 pushes not counted) after which median records the window as failed and acknowledges it; job status counts the tile as failed."
  default     = 5

  validation {
    condition     = var.median_max_attempts >= 1 && var.median_max_attempts <= 20 && floor(var.median_max_attempts) == var.median_max_attempts
    error_message = "median_max_attempts must be a whole number between 1 and 20."
  }
}

variable "push_max_delivery_attempts" {
  type        = number
  description = "Pub/Sub delivery attempts (429 refusals included) of one window before the push subscription dead-letters it. A safety net behind median_max_attempts, so it must be larger; 100 is Pub/Sub's maximum."
  default     = 100

  validation {
    condition     = var.push_max_delivery_attempts >= 5 && var.push_max_delivery_attempts <= 100 && floor(var.push_max_delivery_attempts) == var.push_max_delivery_attempts
    error_message = "push_max_delivery_attempts must be a whole number between 5 and 100 (Pub/Sub's limits)."
  }

  # Needs Terraform >= 1.9 (a rule naming another variable).
  validation {
    condition     = var.push_max_delivery_attempts > var.median_max_attempts
    error_message = "push_max_delivery_attempts must exceed median_max_attempts: the dead letter is only a safety net, median gives up on a window first."
  }
}

variable "dead_letter_retention_days" {
  type        = number
  description = "Days failed windows stay in the dead-letter subscription for inspection and replay."
  default     = 7

  validation {
    condition     = var.dead_letter_retention_days >= 1 && var.dead_letter_retention_days <= 31 && floor(var.dead_letter_retention_days) == var.dead_letter_retention_days
    error_message = "dead_letter_retention_days must be a whole number between 1 and 31."
  }
}

variable "iam_propagation_wait" {
  type        = string
  description = "How long the first apply waits after granting roles to the new Eventarc and Pub/Sub service agents, before creating the storage trigger; see iam.tf. (The wait before the builds is build_iam_propagation_seconds.)"
  default     = "90s"

  validation {
    condition     = can(regex("^[0-9]+s$", var.iam_propagation_wait))
    error_message = "iam_propagation_wait must be a number of seconds such as 90s."
  }
}

# The provider's team raised the same wait in its build-service-account test from 60 to 120 s
# (https://github.com/GoogleCloudPlatform/magic-modules/pull/11909), and its gen2 builder example,
# which waits 60 s, failed about half its runs with "Access to bucket gcf-v2-sources-... denied"
# (https://github.com/hashicorp/terraform-provider-google/issues/20571).
variable "build_iam_propagation_seconds" {
  type        = number
  description = "Seconds the first apply waits after granting roles to the build account, before the three builds start (iam.tf). 120, as the provider's own tests settled on; 60 failed about half the time."
  default     = 120

  validation {
    condition     = var.build_iam_propagation_seconds >= 60 && var.build_iam_propagation_seconds <= 600 && floor(var.build_iam_propagation_seconds) == var.build_iam_propagation_seconds
    error_message = "build_iam_propagation_seconds must be a whole number between 60 and 600 (a 60 s wait already failed about half the time)."
  }
}

variable "run_quota_check" {
  type        = bool
  description = "Read Cloud Run's regional CPU and memory quotas (Cloud Quotas API) and stop before any function is built when one function's max instances would exceed them (quota.tf). Needs cloudquotas.quotas.get on the project (Owner and Editor have it); set false if your credentials cannot read quotas."
  default     = true
}

variable "image_keep_versions" {
  type        = number
  description = "Most recent image versions the functions' Artifact Registry repository keeps per image, whatever their age (the deployed image is the newest of its function)."
  default     = 5

  validation {
    condition     = var.image_keep_versions >= 1 && var.image_keep_versions <= 100 && floor(var.image_keep_versions) == var.image_keep_versions
    error_message = "image_keep_versions must be a whole number between 1 and 100."
  }
}

variable "image_retention_days" {
  type        = number
  description = "Days after which an image version beyond the image_keep_versions most recent is deleted from the functions' Artifact Registry repository."
  default     = 30

  validation {
    condition     = var.image_retention_days >= 1 && var.image_retention_days <= 365 && floor(var.image_retention_days) == var.image_retention_days
    error_message = "image_retention_days must be a whole number of days between 1 and 365."
  }
}
