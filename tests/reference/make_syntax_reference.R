# lme4 fits of formulas written the way R users write them (issue 12): I(x^2), factor(),
# offset(), cbind(), backticks, a column named Treatment, columns named like functions, and
# column / group names with spaces, non-ASCII letters, a leading digit, a hyphen, a quote.
# Each data set is written as a small CSV, read back with read.csv (as autoglmm reads it),
# and fitted there, so both sides fit the same rows and the same sorted factor levels.
# Usage: Rscript make_syntax_reference.R OUTDIR        (lme4 1.1-31, Debian R 4.2)
suppressMessages({library(lme4); library(MASS); library(nlme); library(mlmRev); library(jsonlite)})
out <- commandArgs(TRUE)[1]; dir.create(out, showWarnings = FALSE, recursive = TRUE)
w <- function(df, name) write.csv(df, file.path(out, paste0(name, ".csv")), row.names = FALSE,
                                  fileEncoding = "UTF-8")
r <- function(name) read.csv(file.path(out, paste0(name, ".csv")), check.names = FALSE,
                             stringsAsFactors = TRUE, encoding = "UTF-8")

nl <- nlschools[, c("lang", "IQ", "SES", "GS", "COMB", "class")]
nl$COMB <- as.integer(as.character(nl$COMB))           # 0/1 integers in the file: factor() them
w(nl, "nlschools")
rats <- as.data.frame(RatPupWeight)[, c("weight", "sex", "Litter", "Lsize", "Treatment")]
w(rats, "ratpup")
w(Mmmec[, c("nation", "region", "deaths", "expected", "uvb")], "mmmec")
ome <- OME
levels(ome$OME)[levels(ome$OME) == "N/A"] <- "unknown"  # pandas would read "N/A" as missing
w(ome, "ome")
w(Arabidopsis[, c("total.fruits", "nutrient", "amd", "rack", "popu")], "arabidopsis")
odd <- setNames(nl, c("it's score", "école", "学校", "1st", "x-y", "school id"))
w(odd, "odd_names")
fn <- setNames(nl, c("Sum", "log", "scale", "center", "C", "Q"))
w(fn, "function_names")

fitinfo <- function(m) {
  vc <- VarCorr(m)
  list(logLik = as.numeric(logLik(m)), df = attr(logLik(m), "df"), nobs = nobs(m),
       fixef = as.list(fixef(m)), se = as.list(sqrt(diag(as.matrix(vcov(m))))),
       cov_re = unname(as.matrix(vc[[1]])[, , drop = FALSE]),
       conv_messages = as.list(m@optinfo$conv$lme4$messages))
}
cases <- list()
add <- function(id, data, formula, family = "gaussian") {
  m <- if (family == "gaussian") lmer(as.formula(formula), r(data), REML = FALSE) else
       glmer(as.formula(formula), r(data), family = family)
  cases[[id]] <<- c(list(data = paste0(data, ".csv"), formula = formula, family = family), fitinfo(m))
}
add("nlschools_I_power_int", "nlschools", "lang ~ IQ + SES + I(SES^2) + (1 | class)")
add("nlschools_I_power_float", "nlschools", "lang ~ IQ + I(IQ^2) + SES + (1 | class)")
add("nlschools_factor", "nlschools", "lang ~ IQ + factor(COMB) + GS + (1 + IQ | class)")
add("ratpup_treatment", "ratpup", "weight ~ sex + Lsize + Treatment + (1 | Litter)")
add("mmmec_offset", "mmmec", "deaths ~ uvb + offset(log(expected)) + (1 | region)", "poisson")
add("ome_cbind", "ome", "cbind(Correct, Trials - Correct) ~ Loud + Age + OME + (1 | ID)", "binomial")
add("arabidopsis_backticks", "arabidopsis", "`total.fruits` ~ factor(nutrient) + amd + (1 | popu)", "poisson")
add("odd_names", "odd_names", "`it's score` ~ école + 学校 + I(学校^2) + `1st` + factor(`x-y`) + (1 | `school id`)")
add("function_names", "function_names", "Sum ~ log + scale + I(scale^2) + center + factor(C) + (1 | Q)")

# R's model.matrix (contrasts vs indicator columns, column order, functions) on a small frame
set.seed(12)
small <- data.frame(x1 = round(rnorm(24), 3), x2 = round(runif(24, 0, 4), 3),
                    cat = rep(c("b", "c", "a"), 8), f2 = rep(c("lo", "lo", "hi", "hi"), 6),
                    k = rep(c(3L, 1L, 2L, 10L), 6), flag = rep(c(TRUE, FALSE, FALSE), 8))
w(small, "small")
matrices <- list()
for (rhs in c("~ x1 + cat", "~ 0 + cat", "~ 0 + x1 + cat", "~ cat:x1", "~ cat*f2", "~ cat:f2",
              "~ x1*x2 + I(x1^2) + log(x2 + 5)", "~ factor(k) + poly(x1, 2)",
              "~ scale(x2) + relevel(cat, ref = \"b\")", "~ (x1 + x2 + cat)^2", "~ x1 %in% cat",
              "~ flag + I(x1 > 0)", "~ poly(x1, 3, raw = TRUE) - 1",
              "~ log(x2 + 5, base = 2) + exp(x1/3) + sqrt(abs(x1)) + I(k %% 3) + I(k %/% 3)",
              "~ factor(k, levels = c(10, 1, 2, 3)) + scale(x1, scale = FALSE)",
              "~ x2 + x2:x1 + f2/x1")) {
  mm <- model.matrix(as.formula(rhs), r("small"))
  matrices[[rhs]] <- list(names = colnames(mm), columns = unname(split(unname(mm), col(mm))))
}
cases[["model_matrix"]] <- list(data = "small.csv", matrices = matrices)
writeLines(toJSON(cases, auto_unbox = TRUE, digits = NA, pretty = TRUE), file.path(out, "syntax_reference.json"),
           useBytes = TRUE)
cat("wrote", length(cases), "cases to", out, "\n")
