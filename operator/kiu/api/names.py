"""Name syntaxes that Kubernetes and the ProjectVersion CRD impose.

One copy for the models and the ARN parser, so an ARN names exactly the
objects the API server admits. The CRD carries the same expressions in its
CEL rules; tests/api check that both accept the same names.
"""

import re
from typing import Final

#: RFC 1123 label: namespaces and spec.project.
DNS_LABEL: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
#: RFC 1035 label: ProjectVersion names, because the operator names a Service after them.
DNS_1035_LABEL: Final = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
#: RFC 1123 subdomain: Secret names.
DNS_SUBDOMAIN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
#: Non-empty label value: zone names, which are values of topology.kubernetes.io/zone.
LABEL_VALUE: Final = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
#: Longest label, and so longest namespace, project or version name.
MAX_LABEL_LENGTH: Final = 63


def is_dns_label(text: str) -> bool:
    """Whether ``text`` can name a namespace or a project."""
    return len(text) <= MAX_LABEL_LENGTH and re.fullmatch(DNS_LABEL, text) is not None


def is_dns_1035_label(text: str) -> bool:
    """Whether ``text`` can name a ProjectVersion."""
    return len(text) <= MAX_LABEL_LENGTH and re.fullmatch(DNS_1035_LABEL, text) is not None
