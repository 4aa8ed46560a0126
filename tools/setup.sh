#!/usr/bin/env bash
# Installs what building nextvit needs from Debian's packages (run as root, or with sudo
# available). Idempotent: packages already present are not reinstalled. The CUDA toolkit is not
# a Debian package here: when nvcc is on PATH (or in /usr/local/cuda/bin) the CUDA backend is
# built too; without it the build is CPU-only.
set -euo pipefail

packages=(cmake g++ make catch2 libfmt-dev nlohmann-json3-dev libstb-dev dataset-fashion-mnist
          libjpeg62-turbo-dev libpng-dev libonnx-dev libprotobuf-dev
          libopenmpi-dev openmpi-bin)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi
echo "setup: dependencies present"
