"""The EC2 Query API door: boto3 and the aws CLI onto the same workspace layer as WSRF.

A request is a form-encoded POST signed with AWS Signature Version 4 (``sigv4``) by an
access key ``vws-admin ec2-keys create`` bound to one grid identity (``access_keys``);
``actions`` translates each EC2 action into calls on the workspace-layer facade and the
door's own records (``records``), and ``query`` reads the form and writes the XML answers
and EC2 error codes. ``app`` is the WSGI app the service's HTTP front runs on ``[ec2] listen``.
"""
