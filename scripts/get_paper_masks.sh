#!/usr/bin/env bash
# Fill the folder of the ensemble paper's 180 CT-space subcortical label maps (model v2's
# extra training maps; see subct.paths.paper_masks_dir) from a clone of the paper's
# repository, SCSE-Biomedical-Computing-Group/CT-Subcortical-Segmentation.
#
#   bash scripts/get_paper_masks.sh PATH_TO_CLONE [DESTINATION]
#
# DESTINATION defaults to $SUBCT_PAPER_MASKS, else ../data/paper_masks beside this checkout.
# The maps are read from there and never copied into this repository. A bare mirror
# (git dir without work tree) works too: the two folders are taken with `git archive`.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
clone="${1:?usage: $0 PATH_TO_CLONE [DESTINATION]}"
dest="${2:-${SUBCT_PAPER_MASKS:-$here/../data/paper_masks}}"
folders=(subcortical_segmentation_dataset/masks segmentation_models_training/data/masks)
mkdir -p "$dest"
if [[ -d "$clone/${folders[0]}" ]]; then
  for folder in "${folders[@]}"; do
    mkdir -p "$dest/$folder" && cp -r "$clone/$folder/." "$dest/$folder/"
  done
else  # a bare repository: extract the folders from HEAD (files tracked by LFS are not needed)
  git -C "$clone" archive HEAD "${folders[@]}" | tar -x -C "$dest"
fi
count=$(find "$dest/${folders[0]}" -name '*.nii.gz' | wc -l)
train=$(find "$dest/${folders[1]}/train" -name '*.nii.gz' | wc -l)
echo "$dest: $count maps, $train in the paper's training split"
[[ "$count" -eq 180 && "$train" -eq 126 ]] || { echo "expected 180 maps and 126 training maps" >&2; exit 1; }
