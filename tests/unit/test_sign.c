/* SPDX-License-Identifier: MIT */
/* test_sign.c: signature v2 against vectors computed independently with the
 * openssl CLI, and RFC 3986 encoding of query components. */
#include <string.h>

#include "sign.h"
#include "testhelp.h"

static void check_sig(const char *uri, const char *ts, const char *ak, const char *sk,
		      const char *expected)
{
	char out[45];

	memset(out, 'x', sizeof(out));
	CHECK(sign_v2("GET", uri, ts, ak, sk, out, sizeof(out)) == 0);
	CHECK_STR(out, expected);
}

static void test_vectors(void)
{
	char big[100 + 1];

	/* printf 'GET /vserver/v2/getServerImageDetail?regionCode=KR&serverImageNo=3135&
	 * responseFormatType=json\n1700000000000\nAKIDEXAMPLE' (one line) |
	 * openssl dgst -sha256 -hmac SECRETEXAMPLE -binary | base64 */
	check_sig("/vserver/v2/getServerImageDetail?regionCode=KR&serverImageNo=3135"
		  "&responseFormatType=json",
		  "1700000000000", "AKIDEXAMPLE", "SECRETEXAMPLE",
		  "qeBcF9CPyWz4qjGeSICwjzK8x20bCI0KV6h0mdywqaE=");

	/* printf 'GET /vserver/v2/getRegionList?responseFormatType=json\n1718000000123\n
	 * ncp_iam_BPAMKR0000000001' (one line) |
	 * openssl dgst -sha256 -hmac 'ncp_iam_BPKMKR/s3cr3t+key=' -binary | base64 */
	check_sig("/vserver/v2/getRegionList?responseFormatType=json", "1718000000123",
		  "ncp_iam_BPAMKR0000000001",
		  "ncp_iam_BPKMKR/s3cr3t+key=", "7PTYhC+35ZeavmJDFX5lAjFce/p3/amZ+bJy8QI6fpM=");

	/* printf 'GET /vserver/v2/getServerImageList?regionCode=KR&pageNo=1&pageSize=100&
	 * responseFormatType=json\n1700000123456\nAKIDEXAMPLE' (one line) |
	 * openssl dgst -sha256 -hmac SECRETEXAMPLE -binary | base64 */
	check_sig("/vserver/v2/getServerImageList?regionCode=KR&pageNo=1&pageSize=100"
		  "&responseFormatType=json",
		  "1700000123456", "AKIDEXAMPLE", "SECRETEXAMPLE",
		  "3pBoS9PWUvhHwFtfz8R43YWwhomItb5743DdZDCFq+o=");

	/* Percent-encoded query, signed as sent:
	 * printf 'GET /vserver/v2/getServerImageList?serverImageName=my%%20image%%26%%3D
	 * %%2B%%2F~&responseFormatType=json\n1700000000000\nAKIDEXAMPLE' (one line) |
	 * openssl dgst -sha256 -hmac SECRETEXAMPLE -binary | base64 */
	check_sig("/vserver/v2/getServerImageList?serverImageName=my%20image%26%3D%2B%2F~"
		  "&responseFormatType=json",
		  "1700000000000", "AKIDEXAMPLE", "SECRETEXAMPLE",
		  "+d0WFBkXNW/hhqAyltQV6sxxiarGaNNyAcSbTDjGRBw=");

	/* A secret longer than the SHA-256 block is hashed first:
	 * K=$(printf 'k%.0s' $(seq 1 100)); printf 'GET /vserver/v2/getRegionList?
	 * responseFormatType=json\n1700000000000\nAKIDEXAMPLE' (one line) |
	 * openssl dgst -sha256 -hmac "$K" -binary | base64 */
	memset(big, 'k', 100);
	big[100] = '\0';
	check_sig("/vserver/v2/getRegionList?responseFormatType=json", "1700000000000",
		  "AKIDEXAMPLE", big, "EJAkbPUcTrNILh4uTczApmQveWgK7OVRS/DSuJMHeF4=");
}

static void test_sign_errors(void)
{
	char out[45];

	/* 44 characters and a NUL need 45 bytes. */
	CHECK(sign_v2("GET", "/", "1", "a", "s", out, 44) == -1);
	CHECK(sign_v2("GET", "/", "1", "a", "s", out, 45) == 0);
	CHECK(strlen(out) == 44);
	CHECK(sign_v2(NULL, "/", "1", "a", "s", out, sizeof(out)) == -1);
	CHECK(sign_v2("GET", NULL, "1", "a", "s", out, sizeof(out)) == -1);
	CHECK(sign_v2("GET", "/", "1", "a", NULL, out, sizeof(out)) == -1);
	CHECK(sign_v2("GET", "/", "1", "a", "s", NULL, sizeof(out)) == -1);
}

static void check_enc(const char *in, const char *expected)
{
	char out[256];
	int n = sign_encode_component(in, out, sizeof(out));

	CHECK(n == (int)strlen(expected));
	CHECK_STR(out, expected);
}

static void test_encode(void)
{
	char out[8];

	check_enc("", "");
	check_enc("KR", "KR");
	check_enc("AZaz09-._~", "AZaz09-._~");
	check_enc("my image", "my%20image");
	check_enc("a&b=c", "a%26b%3Dc");
	check_enc("1+1", "1%2B1");
	check_enc("a/b", "a%2Fb");
	check_enc("~tilde~", "~tilde~");
	check_enc("%", "%25");
	check_enc("?#[]@!$'()*,;:", "%3F%23%5B%5D%40%21%24%27%28%29%2A%2C%3B%3A");
	check_enc("\x01\x7f\xff", "%01%7F%FF");
	/* UTF-8 bytes, uppercase hex: "é" and "한" */
	check_enc("\xc3\xa9", "%C3%A9");
	check_enc("\xed\x95\x9c", "%ED%95%9C");
	check_enc("serverImageNoList.1", "serverImageNoList.1");

	/* Room for the NUL is part of the contract. */
	CHECK(sign_encode_component("abc", out, 4) == 3);
	CHECK(sign_encode_component("abcd", out, 4) == -1);
	CHECK(sign_encode_component(" ", out, 4) == 3);
	CHECK_STR(out, "%20");
	CHECK(sign_encode_component(" ", out, 3) == -1);
	CHECK(sign_encode_component("", out, 1) == 0);
	CHECK(sign_encode_component("", out, 0) == -1);
	CHECK(sign_encode_component(NULL, out, sizeof(out)) == -1);
}

int main(void)
{
	test_vectors();
	test_sign_errors();
	test_encode();
	return TEST_REPORT();
}
