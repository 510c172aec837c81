"""`helm test`: DescribeProjectVersions through the gateway Service, as a client calls it.

Signed with the chart's first access key (AWS Signature Version 4, kiu's own signer).
With a project named, the call must succeed; without one, the gateway must answer
ResourceNotFoundException for a project that does not exist: the call was routed,
authenticated, authorized and answered by the API either way.
"""

import hashlib
import json
import os
import sys
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from kiu import sigv4

endpoint = os.environ["KIU_TEST_ENDPOINT"].rstrip("/")
project_arn = os.environ["KIU_TEST_PROJECT_ARN"]
expect_project = os.environ["KIU_TEST_EXPECT_PROJECT"] == "true"
region = project_arn.split(":")[3]
body = json.dumps({"ProjectArn": project_arn}).encode()
headers = sigv4.sign(
    method="POST",
    host=urlsplit(endpoint).netloc,
    path="/",
    headers={
        "content-type": "application/x-amz-json-1.1",
        "x-amz-target": "RekognitionService.DescribeProjectVersions",
    },
    payload_sha256=hashlib.sha256(body).hexdigest(),
    credentials=sigv4.Credentials(
        access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
    ),
    region=region,
    service="rekognition",
    now=time.time(),
)
request = urllib.request.Request(endpoint + "/", data=body, headers=headers, method="POST")
try:
    with urllib.request.urlopen(request, timeout=30) as response:
        versions = json.load(response)["ProjectVersionDescriptions"]
        request_id = response.headers.get("x-amzn-RequestId")
    for version in versions:
        print(version["ProjectVersionArn"], version["Status"])
    print(f"DescribeProjectVersions: {len(versions)} versions (request {request_id})")
    sys.exit(0)
except urllib.error.HTTPError as error:
    answer = json.loads(error.read() or b"{}")
    name = str(answer.get("__type", "")).rpartition("#")[2]
    request_id = error.headers.get("x-amzn-RequestId")
    print(f"DescribeProjectVersions: HTTP {error.code} {name}: {answer.get('message')}")
    print(f"(request {request_id})")
    sys.exit(0 if name == "ResourceNotFoundException" and not expect_project else 1)
except OSError as error:
    print(f"DescribeProjectVersions: {endpoint} did not answer: {error}")
    sys.exit(1)
