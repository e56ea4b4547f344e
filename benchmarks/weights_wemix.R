# Times WeMix's mix() on one weighted model, for benchmarks/weights.py.
# Usage: Rscript weights_wemix.R DATA.csv FORMULA FAMILY LEVEL1_WEIGHT LEVEL2_WEIGHT
# FAMILY is gaussian or binomial (adaptive quadrature, WeMix's default 13 points).
# Prints one JSON line: seconds (mix() only, not reading the file), lnl, coef, se.
suppressMessages({library(WeMix); library(jsonlite)})
a <- commandArgs(TRUE)
d <- read.csv(a[1])
fam <- if (a[3] == "binomial") binomial(link = "logit") else NULL
t0 <- proc.time()[3]
m <- mix(as.formula(a[2]), data = d, weights = c(a[4], a[5]), family = fam)
el <- proc.time()[3] - t0
cat(toJSON(list(seconds = el, lnl = m$lnl, coef = as.list(m$coef), se = as.list(m$SE),
                version = as.character(packageVersion("WeMix"))),
           auto_unbox = TRUE, digits = NA), "\n")
