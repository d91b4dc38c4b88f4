#!/usr/bin/env bash
# Checks the Prometheus alert rules (promtool check rules), runs their unit tests
# (promtool test rules) and checks the example scrape configuration.
set -euo pipefail
cd "$(dirname "$0")/../config/prometheus"
promtool check rules edge-alerts.yml
promtool test rules edge-alerts.test.yml
promtool check config prometheus.yml
jq -e '.panels | length > 0' grafana-dashboard.json >/dev/null
echo "ok: Grafana dashboard JSON parses ($(jq '.panels | length' grafana-dashboard.json) panels)"
