#!/bin/bash
# SPDX-License-Identifier: MIT
# The peer ncloudfs is measured against: the same API calls made by a shell
# script with curl, each request signed with `openssl dgst` (signature v2).
# usage: curl_baseline.sh URL CAFILE ACCESS_KEY SECRET_KEY REGION PAGES [at-once]
# With at-once, page 1 and then every other page at the same time.
set -euo pipefail
url=$1 cafile=$2 ak=$3 sk=$4 region=$5 pages=$6 mode=${7:-}

call() {
	local uri=$1 ts sig
	ts=$(($(date +%s%N) / 1000000))
	sig=$(printf 'GET %s\n%s\n%s' "$uri" "$ts" "$ak" |
		openssl dgst -sha256 -hmac "$sk" -binary | base64)
	curl -sS --fail --cacert "$cafile" -H "x-ncp-apigw-timestamp: $ts" \
		-H "x-ncp-iam-access-key: $ak" -H "x-ncp-apigw-signature-v2: $sig" "$url$uri"
}

page() {
	call "/vserver/v2/getServerImageList?regionCode=$region&pageNo=$1&pageSize=1000&responseFormatType=json" >/dev/null
}

call "/vserver/v2/getRegionList?responseFormatType=json" >/dev/null
if [ "$mode" = at-once ]; then
	page 1
	for ((p = 2; p <= pages; p++)); do page "$p" & done
	wait
else
	for ((p = 1; p <= pages; p++)); do page "$p"; done
fi
