/*
 * Credentials from the environment and the shared files, as the AWS SDKs
 * read them: precedence of files and profiles, half-set credentials
 * reported, secrets never mixed up.
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

#include "creds.h"
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

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_env),
		cmocka_unit_test(test_profiles),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
