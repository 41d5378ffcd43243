#!/usr/bin/env bash
# Deploy benchmark (see bench/deploy.py): the example app on two machines in each of three regions
# of a dev cluster; the time of a new release per strategy and the failed requests seen by a client
# loop in every region during it, vs `immediate` (no orchestration).
#
#   bench/deploy.sh
#   PROFILE=debug bench/deploy.sh     # the debug build tests use (no release build)
#
# Needs root (network namespaces); gVisor, skopeo and aloft-init as the README's set-up installs.
exec "$(dirname "$0")/dev-cluster.sh" deploy "$@"
