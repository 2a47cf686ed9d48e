"""Online inference on Ray Serve: the `Predictor` deployment, its API, deployment and the inference log."""

import warnings

# Ray Serve's own config models use a pydantic feature pydantic deprecates; not ours to fix.
warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ray\.serve\.")

from raylane.serving.deploy import (  # noqa: E402
    Client,
    Deployment,
    api_key,
    deploy,
    preflight,
    read_record,
    shutdown,
    status,
    undeploy,
)

__all__ = ["Client", "Deployment", "api_key", "deploy", "preflight", "read_record", "shutdown", "status", "undeploy"]
