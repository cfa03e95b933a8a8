"""The HTTP service for upstream systems (SPEC section 9): FastAPI on uvicorn, over the same use
cases as the command line (worker.service, worker.intake, worker.submitters)."""
