# Cloud Run's regional quotas, checked before any function is built.
#
# When Cloud Run creates a function's service it checks max instances x CPU and max instances x
# memory against the region's allocation quotas and refuses the service otherwise -- after the
# build has run ("Max instances must be set to 0 or fewer to set the requested total CPU ...
# Quota violated: CpuAllocPerProjectRegion requested: 60000 allowed: 20000,
# MemAllocPerProjectRegion requested: 257698037760 allowed: 42949672960",
# https://github.com/googlecodelabs/feedback/issues/1856; "For the specified value, maxScale may
# not exceed 10", https://github.com/firebase/firebase-tools/pull/5867). New projects have been
# seen with 20 vCPU and 40 GiB. The quotas are read through the Cloud Quotas API
# (google_cloud_quotas_quota_info: parent, service, quota_id; CpuAllocPerProjectRegion is in
# milli-vCPU, MemAllocPerProjectRegion in bytes, both with a "region" dimension), and
# terraform_data.run_quota, which every function depends on, stops the apply with a message
# naming the variable to lower. A check block warns when all functions at their maximum at once
# would exceed the quota (instances would then fail to start under load, not at deploy time).

# Read once the APIs are on and, on the first apply, after the build wait: a just-enabled API
# can take a while to answer, and the functions wait for that sleep anyway. run_quota_check =
# false skips the read (credentials without cloudquotas.quotas.get).
data "google_cloud_quotas_quota_info" "run" {
  for_each = var.run_quota_check ? { cpu = "CpuAllocPerProjectRegion", memory = "MemAllocPerProjectRegion" } : {}

  parent   = "projects/${var.project_id}"
  service  = "run.googleapis.com"
  quota_id = each.value

  depends_on = [google_project_service.apis, time_sleep.build_iam_propagation]
}

locals {
  # What each function asks of the quotas when its service is created (fanout's CPU is fixed at 1
  # in functions.tf). Memory is one of the Gi/Mi sizes variables.tf allows.
  run_sizes = {
    fanout = { max_instances = var.fanout_max_instances, cpu = 1, memory = var.fanout_memory }
    median = { max_instances = var.median_max_instances, cpu = tonumber(var.median_cpu), memory = var.median_memory }
    mosaic = { max_instances = var.mosaic_max_instances, cpu = tonumber(var.mosaic_cpu), memory = var.mosaic_memory }
  }
  run_requests = {
    for name, size in local.run_sizes : name => {
      milli_vcpu = size.max_instances * size.cpu * 1000
      bytes      = size.max_instances * tonumber(trimsuffix(trimsuffix(size.memory, "Gi"), "Mi")) * (endswith(size.memory, "Mi") ? 1048576 : 1073741824)
    }
  }

  # The value in force in var.region: the dimensions info for that region, else the default one
  # (no dimensions). null when it cannot be found (or the check is off): nothing is compared then.
  run_quota = {
    for key, info in data.google_cloud_quotas_quota_info.run : key => try(coalesce(
      one([for d in info.dimensions_infos : try(tonumber(d.details[0].value), null) if try(d.dimensions["region"], "") == var.region]),
      one([for d in info.dimensions_infos : try(tonumber(d.details[0].value), null) if length(try(d.dimensions, {})) == 0]),
    ), null)
  }
  # -1: not known (or a negative "unlimited" value), so not compared.
  run_cpu_quota    = coalesce(lookup(local.run_quota, "cpu", null), -1)
  run_memory_quota = coalesce(lookup(local.run_quota, "memory", null), -1)

  run_over_cpu = [
    for name, request in local.run_requests : "${name}: ${local.run_sizes[name].max_instances} x ${local.run_sizes[name].cpu} vCPU = ${request.milli_vcpu / 1000} vCPU (lower ${name}_max_instances)"
    if local.run_cpu_quota >= 0 && request.milli_vcpu > local.run_cpu_quota
  ]
  run_over_memory = [
    for name, request in local.run_requests : "${name}: ${local.run_sizes[name].max_instances} x ${local.run_sizes[name].memory} = ${request.bytes / 1073741824} GiB (lower ${name}_max_instances)"
    if local.run_memory_quota >= 0 && request.bytes > local.run_memory_quota
  ]
  run_total_milli_vcpu = sum([for request in values(local.run_requests) : request.milli_vcpu])
  run_total_bytes      = sum([for request in values(local.run_requests) : request.bytes])
}

# No resource of its own: every function depends on it, so a function that Cloud Run would refuse
# stops the apply before any build starts.
resource "terraform_data" "run_quota" {
  lifecycle {
    precondition {
      condition     = length(local.run_over_cpu) == 0
      error_message = "Cloud Run would refuse to create these functions' services: max instances x vCPU exceeds the region's CPU allocation quota (CpuAllocPerProjectRegion in ${var.region}: ${local.run_cpu_quota / 1000} vCPU). ${join("; ", local.run_over_cpu)}. Lower the variable named, or ask for more quota (https://cloud.google.com/run/quotas)."
    }
    precondition {
      condition     = length(local.run_over_memory) == 0
      error_message = "Cloud Run would refuse to create these functions' services: max instances x memory exceeds the region's memory allocation quota (MemAllocPerProjectRegion in ${var.region}: ${local.run_memory_quota / 1073741824} GiB). ${join("; ", local.run_over_memory)}. Lower the variable named, or ask for more quota (https://cloud.google.com/run/quotas)."
    }
  }
}

check "run_quota_headroom" {
  assert {
    condition     = !var.run_quota_check || (lookup(local.run_quota, "cpu", null) != null && lookup(local.run_quota, "memory", null) != null)
    error_message = "Cloud Run's CPU or memory allocation quota in ${var.region} could not be read from the Cloud Quotas API: the quota check before the builds did not run."
  }

  assert {
    condition     = (local.run_cpu_quota < 0 || local.run_total_milli_vcpu <= local.run_cpu_quota) && (local.run_memory_quota < 0 || local.run_total_bytes <= local.run_memory_quota)
    error_message = "All three functions at their max instances at once need ${local.run_total_milli_vcpu / 1000} vCPU and ${local.run_total_bytes / 1073741824} GiB, more than Cloud Run's quota in ${var.region} (${local.run_cpu_quota / 1000} vCPU, ${local.run_memory_quota / 1073741824} GiB): under load some instances will not start. Lower median_max_instances, or ask for more quota (https://cloud.google.com/run/quotas)."
  }
}
