"""Online inference on Ray Serve: the `Predictor` deployment, its API, deployment and a client.

The rooms: `app` is the replica (model loading, scoring, logging, profiling), `api` its HTTP side
(FastAPI routes, API key, body checks, error answers), `schemas` the request models, `deploy`
deploy / status / shutdown, `client` the service's URL, API key and an HTTP client, `load` a
bounded load generator.
"""

import warnings

# Ray Serve's own config models use a pydantic feature pydantic deprecates; not ours to fix.
warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ray\.serve\.")

from raylane.serving.client import Client, api_key  # noqa: E402
from raylane.serving.deploy import (  # noqa: E402
    Deployment,
    ServeStatus,
    deploy,
    preflight,
    read_record,
    shutdown,
    status,
    undeploy,
)

__all__ = [
    "Client",
    "Deployment",
    "ServeStatus",
    "api_key",
    "deploy",
    "preflight",
    "read_record",
    "shutdown",
    "status",
    "undeploy",
]
