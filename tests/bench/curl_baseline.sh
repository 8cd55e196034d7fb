#!/bin/bash
# SPDX-License-Identifier: MIT
# The peer ncloudfs is measured against: the same API calls made by a shell
# script with curl, each request signed with `openssl dgst` (signature v2).
# usage: curl_baseline.sh URL CAFILE ACCESS_KEY SECRET_KEY REGION PAGES
set -euo pipefail
url=$1 cafile=$2 ak=$3 sk=$4 region=$5 pages=$6

call() {
	local uri=$1 ts sig
	ts=$(($(date +%s%N) / 1000000))
	sig=$(printf 'GET %s\n%s\n%s' "$uri" "$ts" "$ak" |
		openssl dgst -sha256 -hmac "$sk" -binary | base64)
	curl -sS --fail --cacert "$cafile" -H "x-ncp-apigw-timestamp: $ts" \
		-H "x-ncp-iam-access-key: $ak" -H "x-ncp-apigw-signature-v2: $sig" "$url$uri"
}

call "/vserver/v2/getRegionList?responseFormatType=json" >/dev/null
for ((p = 1; p <= pages; p++)); do
	call "/vserver/v2/getServerImageList?regionCode=$region&pageNo=$p&pageSize=1000&responseFormatType=json" >/dev/null
done
