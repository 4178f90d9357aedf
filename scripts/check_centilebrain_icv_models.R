# Why subct uses CentileBrain's age-only models and not its ICV-adjusted ones: z-scores of
# the repository's own demo subjects (CentileBrain_demo_data/synthetic_subcortical_volume_
# female_demo_data.xlsx, 30 women, FreeSurfer 7.3.2, ICV ~1.45e6 mm3) under both model sets.
# Healthy-like data should give z means near 0 and SDs near 1.
#
#   python -c "import pandas as pd; pd.read_excel('DEMO.xlsx').to_csv('demo.csv', index=False)"
#   Rscript scripts/check_centilebrain_icv_models.R demo.csv CENTILEBRAIN_REPO
#
# CENTILEBRAIN_REPO holds models/MFPmodels_subcorticalvolume_female.rds (ICV-adjusted)
# and models_without_globalMeasures/models/MFPmodels_subcorticalvolume_female.rds.
args <- commandArgs(trailingOnly = TRUE)
if (length(args) != 2) stop("usage: check_centilebrain_icv_models.R DEMO_CSV REPO")
d <- read.csv(args[1]); d$subregion <- 0
regions <- c("Lthal", "Rthal", "Lcaud", "Rcaud", "Lput", "Rput", "Lpal", "Rpal", "Lhippo",
             "Rhippo", "Lamyg", "Ramyg", "Laccumb", "Raccumb")
files <- c(with_icv = "models/MFPmodels_subcorticalvolume_female.rds",
           age_only = "models_without_globalMeasures/models/MFPmodels_subcorticalvolume_female.rds")
for (set in names(files)) {
  models <- readRDS(file.path(args[2], files[[set]]))
  cat(sprintf("\n%s (%s)\n", set, files[[set]]))
  for (i in seq_along(regions)) {
    a <- models[[i]]
    X <- model.matrix(delete.response(a$fit$terms), d)
    predicted <- X %*% a$fit$coefficients[colnames(X)]
    z <- (d[[regions[i]]] - predicted) / sqrt(mean(a$residuals^2))
    cat(sprintf("%-8s z mean %+.2f  sd %.2f\n", regions[i], mean(z), sd(z)))
  }
}
