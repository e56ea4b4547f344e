# The search steps of SPEC section 2 (steps 4-6), scripted with lme4, given a ranking.
#
# This is what a user of the paper's R workflow runs by hand once the forest has ranked
# the predictors: forward selection of fixed effects, interactions among the essential
# predictors, then correlated random slopes tested with the 50:50 chi-square mixture.
# All fits are ML (REML = FALSE) on the same rows (the CSV holds the analysis sample).
#
# Usage: Rscript search_lme4.R DATA.csv OUTCOME GROUP FAMILY RANKING.txt \
#          [ALPHA=0.05] [N_ESSENTIAL=3] [PATIENCE=1]
# Prints one JSON line: seconds per stage, number of fits, the trace and the models.

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = TRUE)
data_path <- args[1]
outcome <- args[2]
group <- args[3]
family <- args[4]
ranking <- readLines(args[5])
alpha <- if (length(args) >= 6) as.numeric(args[6]) else 0.05
n_essential <- if (length(args) >= 7) as.integer(args[7]) else 3L
patience <- if (length(args) >= 8) as.integer(args[8]) else 1L

t_read <- system.time(dat <- read.csv(data_path))[["elapsed"]]
dat[[group]] <- factor(dat[[group]])
ranking <- ranking[nzchar(ranking)]
n_fits <- 0L

model_formula <- function(fixed, inter, slopes) {
  rhs <- c("1", fixed, vapply(inter, paste, "", collapse = ":"))
  re <- paste(c("1", slopes), collapse = " + ")
  as.formula(paste(outcome, "~", paste(rhs, collapse = " + "), "+ (", re, "|", group, ")"))
}

# One ML fit; NULL when lme4 warns that it failed to converge (SPEC: "not converged").
# A singular (boundary) fit counts as converged, as in SPEC section 2.
fit_model <- function(fixed, inter, slopes) {
  n_fits <<- n_fits + 1L
  f <- model_formula(fixed, inter, slopes)
  failed <- FALSE
  m <- withCallingHandlers(
    tryCatch(
      if (family == "gaussian") {
        lmer(f, data = dat, REML = FALSE)
      } else {
        glmer(f, data = dat, family = binomial)
      },
      error = function(e) NULL
    ),
    warning = function(w) {
      if (grepl("converge", conditionMessage(w))) failed <<- TRUE
      invokeRestart("muffleWarning")
    },
    message = function(msg) invokeRestart("muffleMessage")
  )
  if (is.null(m) || failed) return(NULL)
  m
}

collinear <- function(m) !is.null(attr(m@pp$X, "col.dropped"))

level2 <- function(name) {
  all(tapply(dat[[name]], dat[[group]], function(v) length(unique(v)) == 1L))
}

# The shared rule of steps 4-6: fit current + candidate, skip failures and collinear
# candidates, accept when p < alpha, stop after `patience` consecutive misses.
run_stage <- function(stage, cands, state, current) {
  steps <- list()
  misses <- 0L
  for (cand in cands) {
    term <- paste(cand, collapse = ":")
    if (stage == "slope" && level2(cand)) {
      steps[[length(steps) + 1]] <- list(stage = stage, term = term, status = "skipped")
      next
    }
    nxt <- state
    if (stage == "fixed") nxt$fixed <- c(nxt$fixed, cand)
    if (stage == "interaction") nxt$inter <- c(nxt$inter, list(cand))
    if (stage == "slope") nxt$slopes <- c(nxt$slopes, cand)
    m <- fit_model(nxt$fixed, nxt$inter, nxt$slopes)
    if (is.null(m) || (stage != "slope" && collinear(m))) {
      steps[[length(steps) + 1]] <- list(stage = stage, term = term, status = "not_converged")
      next
    }
    lr <- max(0, 2 * (as.numeric(logLik(m)) - as.numeric(logLik(current))))
    df <- attr(logLik(m), "df") - attr(logLik(current), "df")
    if (stage == "slope") {
      q <- 1L + length(state$slopes)
      p <- 0.5 * pchisq(lr, q, lower.tail = FALSE) + 0.5 * pchisq(lr, q + 1, lower.tail = FALSE)
    } else {
      p <- pchisq(lr, df, lower.tail = FALSE)
    }
    ok <- p < alpha
    steps[[length(steps) + 1]] <- list(
      stage = stage, term = term, status = if (ok) "accepted" else "rejected",
      loglik = as.numeric(logLik(m)), chisq = lr, p = p
    )
    if (ok) {
      state <- nxt
      current <- m
      misses <- 0L
    } else {
      misses <- misses + 1L
      if (misses >= patience) break
    }
  }
  list(state = state, model = current, steps = steps)
}

clock <- list()
t0 <- proc.time()[["elapsed"]]
state <- list(fixed = character(0), inter = list(), slopes = character(0))
null <- fit_model(state$fixed, state$inter, state$slopes)
clock$null <- proc.time()[["elapsed"]] - t0

t0 <- proc.time()[["elapsed"]]
base <- run_stage("fixed", ranking, state, null)
clock$fixed <- proc.time()[["elapsed"]] - t0

t0 <- proc.time()[["elapsed"]]
essentials <- head(ranking[ranking %in% base$state$fixed], n_essential)
pairs <- if (length(essentials) >= 2) combn(essentials, 2, simplify = FALSE) else list()
prelim <- run_stage("interaction", pairs, base$state, base$model)
clock$interaction <- proc.time()[["elapsed"]] - t0

t0 <- proc.time()[["elapsed"]]
slope_cands <- ranking[ranking %in% base$state$fixed]
optimal <- run_stage("slope", slope_cands, prelim$state, prelim$model)
clock$slope <- proc.time()[["elapsed"]] - t0

describe <- function(stage) {
  list(
    formula = paste(deparse(formula(stage$model), width.cutoff = 500L), collapse = ""),
    loglik = as.numeric(logLik(stage$model)),
    df = attr(logLik(stage$model), "df")
  )
}

out <- list(
  tool = "lme4",
  lme4 = as.character(packageVersion("lme4")),
  read_seconds = t_read,
  seconds = clock,
  total_seconds = sum(unlist(clock)),
  n_fits = n_fits,
  null_loglik = as.numeric(logLik(null)),
  base = describe(base),
  preliminary = describe(prelim),
  optimal = describe(optimal),
  optimal_terms = list(
    fixed = I(optimal$state$fixed),
    interactions = I(vapply(optimal$state$inter, paste, "", collapse = ":")),
    random_slopes = I(optimal$state$slopes)
  ),
  steps = c(base$steps, prelim$steps, optimal$steps)
)
cat(toJSON(out, auto_unbox = TRUE, digits = NA, null = "null"), "\n")
