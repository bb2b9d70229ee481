# `make test` and `make experiment` work on a fresh machine: the virtual
# environment is created here, and Debian's wrk / curl / h2load / slowhttptest are installed
# when they are missing and we are allowed to (root with apt-get).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

CONC      ?=
RUNTIMES  ?=
WORKLOADS ?=
PROTO     ?=
DURATION  ?=
REPEAT    ?=
PEERS     ?=
RESUME    ?=
CLAIM     ?=
PARSERS   ?=
PROTOS    ?=
INTERPRETERS ?=

.PHONY: test experiment claims bench bench-apps bench-tls venv tools clean fuzz freethreaded test-freethreaded standard-3.13

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,experiments]'
	touch $(STAMP)

venv: $(STAMP)

# System tools from Debian's packages; skip what is already on PATH.
tools:
	@sh .ci/install-tools.sh curl wrk h2load slowhttptest

# Two test processes (pytest-xdist): most of the suite's time is spent waiting on deadlines
# and sockets, not computing, so two overlap well even on two cores. TEST_JOBS=0 runs it in one.
TEST_JOBS ?= 2
test: venv tools
	$(PY) -m pytest -q -n $(TEST_JOBS) --durations=10

# The parser fuzzers at length (ASTRA_FUZZ=1 selects their long profile; `make test`
# runs them briefly). A failure prints its input: keep it in tests/fuzz_corpus/.
fuzz: venv
	ASTRA_FUZZ=1 $(PY) -m pytest -q --timeout=0 tests/test_fuzz_h1.py tests/test_fuzz_h2.py

experiment: venv tools $(if $(findstring freethreaded,$(INTERPRETERS)),freethreaded) \
	  $(if $(findstring standard-3.13,$(INTERPRETERS)),standard-3.13)
	$(PY) -m experiments run \
	  $(if $(CONC),--conc $(CONC)) $(if $(RUNTIMES),--runtimes $(RUNTIMES)) \
	  $(if $(WORKLOADS),--workloads $(WORKLOADS)) $(if $(PROTO),--proto $(PROTO)) \
	  $(if $(DURATION),--duration $(DURATION)) $(if $(REPEAT),--repeat $(REPEAT)) \
	  $(if $(PEERS),--peers $(PEERS)) $(if $(RESUME),--resume $(RESUME)) \
	  $(if $(INTERPRETERS),--interpreters $(INTERPRETERS))

# The seeds' claims, measured and judged: results/REPORT.md (CLAIM=7 runs one).
# INTERPRETERS=standard-3.13,freethreaded judges every claim on each, side by side.
# FROM=results/claims-<id> judges a committed run again without measuring; SECOND=results/claims-<id>
# (with FROM) marks each verdict reproduced or not by that second run (by default, the run
# results/REPRODUCIBILITY.md compared it with).
claims: venv tools $(if $(findstring freethreaded,$(INTERPRETERS)),freethreaded) \
	  $(if $(findstring standard-3.13,$(INTERPRETERS)),standard-3.13)
	$(PY) -m experiments.claims $(if $(CLAIM),--claim $(CLAIM)) $(if $(FROM),--from $(FROM)) \
	  $(if $(SECOND),--second $(SECOND)) $(if $(INTERPRETERS),--interpreters $(INTERPRETERS))

# Hello world, astra on every runtime with both HTTP/1 parsers, against uvicorn, granian,
# hypercorn, waitress and the raw floors, at 1, 64 and 1,000 connections, three interleaved
# rounds (~30 min; `$(PY) -m experiments.benches.hello --dry-run` prints the plan). Optional:
# CONC=64 RUNTIMES=threaded PARSERS=httptools PEERS=granian-wsgi DURATION=5 REPEAT=3.
bench: venv tools
	$(PY) -m experiments.benches.hello \
	  $(if $(CONC),--conns $(CONC)) $(if $(RUNTIMES),--runtimes $(RUNTIMES)) \
	  $(if $(PARSERS),--parsers $(PARSERS)) $(if $(PEERS),--peers $(PEERS)) \
	  $(if $(DURATION),--duration $(DURATION)) $(if $(REPEAT),--repeat $(REPEAT))

# The same WSGI (Flask) and ASGI (Starlette) apps on astra's runtimes and on gunicorn, waitress,
# granian, uvicorn and hypercorn; and what the interface costs astra next to its native handler;
# then the apps over HTTP/2 where the peer speaks it (PROTOS=h1 or h2 for one).
bench-apps: venv tools
	$(PY) -m experiments.benches.apps \
	  $(if $(CONC),--conns $(CONC)) $(if $(RUNTIMES),--runtimes $(RUNTIMES)) \
	  $(if $(PEERS),--peers $(PEERS)) $(if $(DURATION),--duration $(DURATION)) $(if $(REPEAT),--repeat $(REPEAT)) \
	  $(if $(PROTOS),--protos $(PROTOS))

# Over HTTPS: handshakes/s and requests/s (HTTP/1.1 and HTTP/2 by ALPN) on every runtime against
# uvicorn, hypercorn and granian with their own TLS, and each server's cleartext cost beside it
# (three interleaved rounds, ~15 min). Optional: RUNTIMES=hybrid PEERS=granian-asgi DURATION=5 REPEAT=3.
bench-tls: venv tools
	$(PY) -m experiments.benches.tls $(if $(RUNTIMES),--runtimes $(RUNTIMES)) $(if $(PEERS),--peers $(PEERS)) \
	  $(if $(DURATION),--duration $(DURATION)) $(if $(REPEAT),--rounds $(REPEAT))

# CPython 3.13 without the GIL (PEP 703), built once from Debian 13's source package and
# cached under ~/.cache/astra (5-10 min; needs root for apt-get), and a virtualenv on it.
# `make test-freethreaded` runs the whole suite there; `make experiment INTERPRETERS=...`
# runs the servers under test on it (see README).
FT_PREFIX ?= $(HOME)/.cache/astra/python3.13t
FT_PYTHON := $(FT_PREFIX)/bin/python3.13t
FT_VENV   ?= .venv-ft

$(FT_VENV)/.installed: pyproject.toml
	PREFIX=$(FT_PREFIX) sh .ci/build-freethreaded.sh
	sh .ci/freethreaded-venv.sh $(FT_PYTHON) $(FT_VENV)
	touch $@

freethreaded: $(FT_VENV)/.installed

# CPython 3.13 with the GIL (pyenv's), for INTERPRETERS=standard-3.13: the same version as the
# free-threaded build, so that the comparison isolates the GIL.
PY313 ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3.13) $(shell command -v python3.13))
.venv-313/.installed: pyproject.toml
	@[ -n "$(PY313)" ] || { echo "no python3.13 found (set PY313=...)"; exit 1; }
	$(PY313) -m venv .venv-313
	.venv-313/bin/python -m pip install -q -e '.[experiments,fast]'
	touch $@

standard-3.13: .venv-313/.installed

test-freethreaded: freethreaded tools
	$(FT_VENV)/bin/python -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache
