/*
 * Credentials from the environment and the shared files, as the AWS SDKs
 * read them: precedence of files and profiles, half-set credentials
 * reported, secrets never mixed up. And the chain over them
 * (credchain.c) in its synchronous part: the order, the answer of a
 * failed chain until its retry time, a fetch again after expire. (Its
 * web identity and IMDSv2 legs are driven by the integration tests,
 * against the emulator.)
 */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "credchain.h"
#include "creds.h"
#include "http.h"
#include "util.h"

static char	 dir[] = "/tmp/ck-creds-XXXXXX";
static char	*kfile, *cfile;

static void
put(const char *path, const char *text)
{
	FILE	*f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static int
setup(void **state)
{
	if (mkdtemp(dir) == NULL)
		return -1;
	xasprintf(&kfile, "%s/credentials", dir);
	xasprintf(&cfile, "%s/config", dir);
	put(kfile, "# comment\n[default]\naws_access_key_id = AKIDDEFAULT\n"
	    "aws_secret_access_key=secretdefault\n\n[ops]\n"
	    "aws_access_key_id = AKIDOPS\naws_secret_access_key = secretops\n"
	    "aws_session_token = tokenops\n[half]\naws_access_key_id = X\n");
	put(cfile, "[default]\nregion = us-east-1\n[profile cfgonly]\n"
	    "aws_access_key_id = AKIDCFG\naws_secret_access_key = secretcfg\n"
	    "[cfgonly]\naws_access_key_id = WRONG\n");
	unsetenv("AWS_PROFILE");
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
	unsetenv("AWS_SESSION_TOKEN");
	return 0;
}

static int
teardown(void **state)
{
	unlink(kfile);
	unlink(cfile);
	rmdir(dir);
	free(kfile);
	free(cfile);
	return 0;
}

static void
test_env(void **state)
{
	struct aws_creds	 c;
	char			*cause = NULL;

	assert_int_equal(creds_from_env(&c, &cause), -ENOENT);
	setenv("AWS_ACCESS_KEY_ID", "AKIDENV", 1);
	assert_int_equal(creds_from_env(&c, &cause), -EINVAL);
	assert_string_equal(cause, "AWS_ACCESS_KEY_ID is set but "
	    "AWS_SECRET_ACCESS_KEY is not");
	free(cause);
	setenv("AWS_SECRET_ACCESS_KEY", "secretenv", 1);
	setenv("AWS_SESSION_TOKEN", "tok", 1);
	assert_int_equal(creds_from_env(&c, &cause), 0);
	assert_string_equal(c.access_key_id, "AKIDENV");
	assert_string_equal(c.secret_access_key, "secretenv");
	assert_string_equal(c.session_token, "tok");
	assert_string_equal(c.source, "environment");
	creds_free(&c);
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
	unsetenv("AWS_SESSION_TOKEN");
}

static void
test_profiles(void **state)
{
	struct aws_creds	 c;
	char			*cause = NULL;

	assert_int_equal(creds_from_profile(NULL, kfile, cfile, &c, &cause),
	    0);
	assert_string_equal(c.access_key_id, "AKIDDEFAULT");
	assert_string_equal(c.secret_access_key, "secretdefault");
	assert_null(c.session_token);
	assert_string_equal(c.source, "profile default");
	creds_free(&c);

	assert_int_equal(creds_from_profile("ops", kfile, cfile, &c, &cause),
	    0);
	assert_string_equal(c.session_token, "tokenops");
	creds_free(&c);

	/* AWS_PROFILE picks the profile when the daemon config names none. */
	setenv("AWS_PROFILE", "ops", 1);
	assert_int_equal(creds_from_profile(NULL, kfile, cfile, &c, &cause),
	    0);
	assert_string_equal(c.access_key_id, "AKIDOPS");
	creds_free(&c);
	unsetenv("AWS_PROFILE");

	/* The config file names profiles "[profile NAME]". */
	assert_int_equal(creds_from_profile("cfgonly", kfile, cfile, &c,
	    &cause), 0);
	assert_string_equal(c.access_key_id, "AKIDCFG");
	creds_free(&c);

	assert_int_equal(creds_from_profile("nosuch", kfile, cfile, &c,
	    &cause), -ENOENT);
	assert_int_equal(creds_from_profile("half", kfile, cfile, &c, &cause),
	    -EINVAL);
	assert_non_null(strstr(cause, "profile half has aws_access_key_id but "
	    "not aws_secret_access_key"));
	free(cause);
	assert_int_equal(creds_from_profile(NULL, "/nonexistent/a",
	    "/nonexistent/b", &c, &cause), -ENOENT);
}

static void
never_called(void *arg)
{
	fail_msg("the chain called back for a synchronous answer");
}

static void
test_chain(void **state)
{
	struct event_base	*base = event_base_new();
	struct http		*h = http_new(base);
	struct credchain	*cc = credchain_new(h, "test", never_called,
				    NULL);
	const struct aws_creds	*cr;
	const char		*why;

	/* Nothing anywhere, no instance metadata: a reason, then the same
	 * answer without a second fetch until the retry time. */
	setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/c", 1);
	setenv("AWS_CONFIG_FILE", "/nonexistent/d", 1);
	setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
	unsetenv("AWS_ROLE_ARN");
	assert_int_equal(credchain_get(cc, &cr, &why), -EACCES);
	assert_null(cr);
	assert_non_null(strstr(why, "no AWS credentials: none in the "
	    "environment or the shared files, no web identity, and "
	    "AWS_EC2_METADATA_DISABLED is set"));
	assert_null(credchain_source(cc));
	setenv("AWS_ACCESS_KEY_ID", "AKIDLATER", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "secretlater", 1);
	assert_int_equal(credchain_get(cc, &cr, &why), -EACCES);
	assert_int_equal(credchain_fetches(cc), 1);
	credchain_free(cc);

	/* The environment first, kept (it does not expire). */
	cc = credchain_new(h, "test", never_called, NULL);
	setenv("AWS_SHARED_CREDENTIALS_FILE", kfile, 1);
	assert_int_equal(credchain_get(cc, &cr, &why), 1);
	assert_string_equal(cr->access_key_id, "AKIDLATER");
	assert_string_equal(credchain_source(cc), "environment");
	assert_int_equal(credchain_get(cc, &cr, &why), 1);
	assert_int_equal(credchain_fetches(cc), 1);
	/* AWS said they expired: fetched again, now from the profile. */
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
	credchain_configure(cc, "ops", "eu-west-1");
	credchain_expire(cc);
	assert_int_equal(credchain_get(cc, &cr, &why), 1);
	assert_int_equal(credchain_fetches(cc), 2);
	assert_string_equal(cr->access_key_id, "AKIDOPS");
	assert_string_equal(cr->session_token, "tokenops");
	assert_string_equal(credchain_source(cc), "profile ops");
	credchain_free(cc);

	/* Half in the environment is an error worth telling. */
	cc = credchain_new(h, "test", never_called, NULL);
	setenv("AWS_ACCESS_KEY_ID", "AKIDHALF", 1);
	assert_int_equal(credchain_get(cc, &cr, &why), -EACCES);
	assert_non_null(strstr(why, "AWS_ACCESS_KEY_ID is set but "
	    "AWS_SECRET_ACCESS_KEY is not"));
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SHARED_CREDENTIALS_FILE");
	unsetenv("AWS_CONFIG_FILE");
	unsetenv("AWS_EC2_METADATA_DISABLED");
	credchain_free(cc);
	http_free(h);
	event_base_free(base);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_env),
		cmocka_unit_test(test_profiles),
		cmocka_unit_test(test_chain),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
