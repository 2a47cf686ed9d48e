"""Online inference on Ray Serve: the `Predictor` deployment, its API, deployment and the inference log."""

from raylane.serving.deploy import (
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
