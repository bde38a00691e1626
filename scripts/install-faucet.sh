#!/usr/bin/env bash
# Installs Faucet (and os-ken, which it pulls in) into a Python virtual
# environment at ${SC_FAUCET_VENV:-/opt/sc-faucet}, for the interop tests of
# netns-tests/tests/controllers13.rs. Idempotent: an environment holding this
# version is left alone.
set -euo pipefail
venv=${SC_FAUCET_VENV:-/opt/sc-faucet}
version=1.10.12
if [[ -x $venv/bin/faucet ]] && "$venv/bin/pip" show faucet 2>/dev/null | grep -qx "Version: $version"; then
    exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install -q "faucet==$version"
