# Carry the CentileBrain normative models of subcortical volume into subct's JSON
# (src/subct/data/norms/centilebrain_subcortical.json), read by subct.norms.
#
#   Rscript scripts/extract_centilebrain_norms.R CENTILEBRAIN_REPO COMMIT OUTPUT_JSON
#
# CENTILEBRAIN_REPO: a checkout of github.com/CentileBrain/centilebrain (the `fetch` tool
# brings one). Needs only base R (readRDS); the mfp package is not needed because each
# model's prediction is its glm's coefficients applied to the fractional-polynomial terms
# written in the fitted formula, which this script parses into (power, log power) pairs:
#   I((age/100)^p)                    -> x^p
#   log((age/100))                    -> log x
#   I(log((age/100))^k)               -> (log x)^k
#   I((age/100)^p * log((age/100)))   -> x^p log x        with x = age in years / 100.
#
# Models used: models_without_globalMeasures/models/MFPmodels_subcorticalvolume_{female,male}.rds
# (sex-specific, volume ~ fp(age)). The root models/ folder's ICV-adjusted versions are NOT
# used: applied to the repository's own demo data they predict about half the volumes
# (z ~ +6 for every structure), so their ICV scale cannot be trusted.
#
# The root-mean-square residual (the z-score's denominator in CentileBrain's own code) is
# taken from the stored residuals; the male file has none stored, so it is recovered from
# the residual deviance and the coefficient covariance: var = s^2 (X'X)^-1 with
# s^2 = dev / (n - p) and (X'X)[1,1] = n give n (n - p) = dev * solve(var)[1,1]; the
# recovery is exact on the female file (n and RMSE match the stored residuals).
args <- commandArgs(trailingOnly = TRUE)
if (length(args) != 3) stop("usage: extract_centilebrain_norms.R REPO COMMIT OUTPUT_JSON")
repo <- args[1]; commit <- args[2]; output <- args[3]

# order of the 14 models in each file = the columns of the CentileBrain template
structures <- c("Left-Thalamus", "Right-Thalamus", "Left-Caudate", "Right-Caudate",
                "Left-Putamen", "Right-Putamen", "Left-Pallidum", "Right-Pallidum",
                "Left-Hippocampus", "Right-Hippocampus", "Left-Amygdala", "Right-Amygdala",
                "Left-Accumbens-area", "Right-Accumbens-area")

parse_term <- function(label) {
  x <- "\\(age/100\\)"
  num <- "(-?[0-9.]+)"
  patterns <- list(
    c(paste0("^I\\(", x, "\\^", num, "\\)$"), "power"),
    c(paste0("^log\\(", x, "\\)$"), "log"),
    c(paste0("^I\\(log\\(", x, "\\)\\^", num, "\\)$"), "logpower"),
    c(paste0("^I\\(", x, "\\^", num, " \\* log\\(", x, "\\)\\)$"), "powerlog"))
  for (p in patterns) {
    m <- regmatches(label, regexec(p[1], label))[[1]]
    if (length(m) == 0) next
    return(switch(p[2],
      power = c(as.numeric(m[2]), 0),
      log = c(0, 1),
      logpower = c(0, as.numeric(m[2])),
      powerlog = c(as.numeric(m[2]), 1)))
  }
  stop(paste("unknown term:", label))
}

fmt <- function(v) formatC(v, digits = 17, format = "g")

model_json <- function(a, name) {
  coef <- a$fit$coefficients
  p <- length(coef)
  k <- solve(a$var)[1, 1] * a$dev
  n <- (p + sqrt(p^2 + 4 * k)) / 2
  rmse <- if (length(a$residuals) > 0) sqrt(mean(a$residuals^2)) else sqrt(a$dev / n)
  if (length(a$residuals) > 0 && abs(n - length(a$residuals)) > 0.5) stop("n recovery failed")
  terms <- c()
  for (label in names(coef)[-1]) {
    t <- parse_term(label)
    terms <- c(terms, sprintf('{"power": %s, "log_power": %s, "coefficient": %s}',
                              fmt(t[1]), fmt(t[2]), fmt(coef[[label]])))
  }
  sprintf('"%s": {"intercept": %s, "terms": [%s], "rmse_mm3": %s, "n": %d}',
          name, fmt(coef[["(Intercept)"]]), paste(terms, collapse = ", "), fmt(rmse), round(n))
}

sex_json <- function(sex) {
  file <- file.path(repo, "models_without_globalMeasures", "models",
                    sprintf("MFPmodels_subcorticalvolume_%s.rds", sex))
  models <- readRDS(file)
  if (length(models) != length(structures)) stop(paste(file, "does not hold 14 models"))
  parts <- mapply(model_json, models, structures)
  sprintf('"%s": {%s}', sex, paste(parts, collapse = ",\n  "))
}

json <- paste0(
  '{"source": {"name": "CentileBrain", ',
  '"citation": "Ge R, Yu Y, Qi YX, et al. Normative modelling of brain morphometry across the lifespan with CentileBrain: algorithm benchmarking and model optimisation. Lancet Digit Health 2024;6(3):e211-e221. doi:10.1016/S2589-7500(23)00250-9", ',
  '"repository": "https://github.com/CentileBrain/centilebrain", "commit": "', commit, '", ',
  '"files": "models_without_globalMeasures/models/MFPmodels_subcorticalvolume_{female,male}.rds", ',
  '"method": "sex-specific multivariable fractional polynomial regression of FreeSurfer (MRI) volume on age; z = (volume - prediction) / RMSE of the training residuals", ',
  '"extracted_by": "scripts/extract_centilebrain_norms.R"},\n',
  '"age_scale_years": 100,\n',
  '"models": {', sex_json("female"), ",\n", sex_json("male"), "}}\n")
writeLines(json, output)
cat("wrote", output, "\n")
