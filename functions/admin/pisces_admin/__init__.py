"""The admin function: the control plane (keys), behind IAM in AWS."""
