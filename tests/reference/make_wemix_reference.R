# Simulates a two-stage sample with informative selection at both levels and records
# WeMix's mix() fits (pseudo-maximum likelihood, Rabe-Hesketh & Skrondal 2006) on it.
# Usage: Rscript make_wemix_reference.R OUTDIR
# Needs R with lme4, jsonlite and WeMix (4.0.3 was used) on the library path.
#
# Population: 400 schools of 30-60 students. y = 1 + 0.5 x1 + 0.3 z + u0 + u1 x1 + e with
# sd(u0) = 0.6, sd(u1) = 0.3, cor(u0, u1) = 0.3, sd(e) = 1; ybin ~ Bernoulli(plogis(-0.5 +
# 0.5 x1 + 0.3 z + 1.2 u0)). Schools are drawn with probability plogis(-1.3 + 2 u0) and
# students within them with plogis(-0.5 + 0.8 e + 0.8 ybin): both stages prefer high
# outcomes, so unweighted estimates of the intercept are biased upwards.
# Weights: w_school = 1 / P(school), w_cond = 1 / P(student | school),
# w_total = w_school * w_cond (the unconditional weight WeMix takes by default).
suppressMessages({library(lme4); library(jsonlite); library(WeMix)})
out <- commandArgs(TRUE)[1]
dir.create(out, showWarnings = FALSE, recursive = TRUE)

set.seed(20261126)
M <- 400
size <- sample(30:60, M, replace = TRUE)
u0 <- rnorm(M, 0, 0.6)
u1 <- 0.3 * (0.3 * u0 / 0.6 + sqrt(1 - 0.3^2) * rnorm(M))
z <- rnorm(M)
school <- rep(seq_len(M), size)
n <- length(school)
x1 <- rnorm(n)
e <- rnorm(n)
y <- 1 + 0.5 * x1 + 0.3 * z[school] + u0[school] + u1[school] * x1 + e
ybin <- rbinom(n, 1, plogis(-0.5 + 0.5 * x1 + 0.3 * z[school] + 1.2 * u0[school]))
p_school <- plogis(-1.3 + 2 * u0)
p_student <- plogis(-0.5 + 0.8 * e + 0.8 * ybin)
take_school <- runif(M) < p_school
take <- take_school[school] & (runif(n) < p_student)
pop <- data.frame(school = school, x1 = x1, z = z[school], y = y, ybin = ybin)
d <- data.frame(school = sprintf("s%03d", school), x1 = round(x1, 6), z = round(z[school], 6),
                y = round(y, 6), ybin = ybin,
                w_school = round(1 / p_school[school], 6), w_cond = round(1 / p_student, 6))[take, ]
d$w_total <- d$w_school * d$w_cond
keep <- ave(d$y, d$school, FUN = length) >= 2  # at least two students per school
d <- d[keep, ]
rownames(d) <- NULL
write.csv(d, file.path(out, "wemix_sample.csv"), row.names = FALSE)

wemix_info <- function(m, seconds, formula, family) {
  vars <- m$vars
  res <- list(formula = formula, family = family, lnl = m$lnl,
              coef = as.list(m$coef), se = as.list(m$SE),
              vars = as.list(vars), seconds = seconds, nobs = nrow(d),
              ngroups = length(unique(d$school)))
  if (is.null(m$varDF$SEvcov)) {
    res$vars_se <- as.list(m$var_theta)  # binomial: sandwich SEs of the (co)variances
  } else {
    v <- m$varDF
    nm <- ifelse(is.na(v$var2), paste(v$grp, v$var1, sep = ":"), paste(v$grp, v$var1, v$var2, sep = ":"))
    nm <- sub(":NA$", "", nm)
    res$vars_se <- as.list(setNames(v$SEvcov, nm))
    res$vars_named <- as.list(setNames(v$vcov, nm))
  }
  res
}
cases <- list()
run <- function(id, formula, family = NULL) {
  t0 <- proc.time()[3]
  m <- mix(as.formula(formula), data = d, weights = c("w_total", "w_school"), family = family)
  el <- proc.time()[3] - t0
  cases[[id]] <<- wemix_info(m, el, formula, if (is.null(family)) "gaussian" else "binomial")
  # unweighted lme4 fits of the same model, for the bias comparison
  u <- if (is.null(family)) lmer(as.formula(formula), d, REML = FALSE) else
       glmer(as.formula(formula), d, family = binomial, nAGQ = 1)
  cases[[id]]$lme4_unweighted_fixef <<- as.list(fixef(u))
}
run("gaussian_intercept", "y ~ x1 + z + (1 | school)")
run("gaussian_slope", "y ~ x1 + z + (1 + x1 | school)")
run("binomial_intercept", "ybin ~ x1 + z + (1 | school)", family = binomial(link = "logit"))
cases$population <- list(rows = n, schools = M, sampled_rows = nrow(d),
                         sampled_schools = length(unique(d$school)),
                         truth = list(intercept = 1, x1 = 0.5, z = 0.3, sd_u0 = 0.6, sd_u1 = 0.3,
                                      cor = 0.3, sigma = 1))
cases$versions <- list(R = R.version.string, WeMix = as.character(packageVersion("WeMix")),
                       lme4 = as.character(packageVersion("lme4")))
writeLines(toJSON(cases, auto_unbox = TRUE, digits = NA, pretty = TRUE),
           file.path(out, "wemix_reference.json"))
