# Reference predictions of CentileBrain's own model objects, for tests/norms/test_models.py
# (tests/data/centilebrain_r_predictions.csv): each model's fitted formula evaluated by R
# (model.matrix on the glm's terms) at five ages; subct's Python must reproduce them.
#
#   Rscript scripts/reference_centilebrain_predictions.R CENTILEBRAIN_REPO > tests/data/centilebrain_r_predictions.csv
args <- commandArgs(trailingOnly = TRUE)
if (length(args) != 1) stop("usage: reference_centilebrain_predictions.R REPO")
structures <- c("Left-Thalamus", "Right-Thalamus", "Left-Caudate", "Right-Caudate",
                "Left-Putamen", "Right-Putamen", "Left-Pallidum", "Right-Pallidum",
                "Left-Hippocampus", "Right-Hippocampus", "Left-Amygdala", "Right-Amygdala",
                "Left-Accumbens-area", "Right-Accumbens-area")
ages <- data.frame(age = c(5, 20, 45, 70, 89), subregion = 0)
cat("sex,structure,age_years,predicted_mm3\n")
for (sex in c("female", "male")) {
  models <- readRDS(file.path(args[1], "models_without_globalMeasures", "models",
                              sprintf("MFPmodels_subcorticalvolume_%s.rds", sex)))
  for (i in seq_along(structures)) {
    a <- models[[i]]
    X <- model.matrix(delete.response(a$fit$terms), ages)
    predicted <- X %*% a$fit$coefficients[colnames(X)]
    for (j in seq_len(nrow(ages)))
      cat(sprintf("%s,%s,%g,%.6f\n", sex, structures[i], ages$age[j], predicted[j]))
  }
}
