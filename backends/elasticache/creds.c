/*
 * Credentials from the environment and the shared files; see creds.h.
 * The files are the AWS INI dialect: "[name]" sections (in the config
 * file "[profile name]", except "[default]"), "key = value" lines, '#' and
 * ';' comments.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "creds.h"
#include "spec.h"
#include "util.h"

#define CREDS_FILE_MAX	(256 * 1024)

void
creds_free(struct aws_creds *c)
{
	if (c == NULL)
		return;
	if (c->secret_access_key != NULL) {
		explicit_bzero(c->secret_access_key,
		    strlen(c->secret_access_key));
		free(c->secret_access_key);
	}
	if (c->session_token != NULL) {
		explicit_bzero(c->session_token, strlen(c->session_token));
		free(c->session_token);
	}
	free(c->access_key_id);
	free(c->source);
	memset(c, 0, sizeof *c);
}

int
creds_from_env(struct aws_creds *c, char **cause)
{
	const char	*id = getenv("AWS_ACCESS_KEY_ID");
	const char	*secret = getenv("AWS_SECRET_ACCESS_KEY");
	const char	*token = getenv("AWS_SESSION_TOKEN");

	memset(c, 0, sizeof *c);
	if ((id == NULL || *id == '\0') && (secret == NULL || *secret == '\0'))
		return -ENOENT;
	if (id == NULL || *id == '\0' || secret == NULL || *secret == '\0') {
		xasprintf(cause, "%s is set but %s is not",
		    id && *id ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY",
		    id && *id ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID");
		return -EINVAL;
	}
	c->access_key_id = xstrdup(id);
	c->secret_access_key = xstrdup(secret);
	if (token != NULL && *token != '\0')
		c->session_token = xstrdup(token);
	c->source = xstrdup("environment");
	return 0;
}

static char *
trim(char *s)
{
	char	*e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

/*
 * Read key's value in section from an INI file; NULL when absent. The
 * buffer holding secrets is wiped before it is freed.
 */
static char *
ini_get(const char *path, const char *section, const char *key)
{
	char	*buf, *line, *save = NULL, *val = NULL, *eq;
	size_t	 len;
	int	 in = 0;

	if (read_file_bounded(path, CREDS_FILE_MAX, &buf, &len) != 0)
		return NULL;
	for (line = strtok_r(buf, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save)) {
		char *l = trim(line);

		if (*l == '#' || *l == ';' || *l == '\0')
			continue;
		if (*l == '[') {
			char *end = strchr(l, ']');
			if (end == NULL)
				continue;
			*end = '\0';
			in = strcmp(trim(l + 1), section) == 0;
			continue;
		}
		if (!in || (eq = strchr(l, '=')) == NULL)
			continue;
		*eq = '\0';
		if (strcmp(trim(l), key) == 0) {
			free(val);
			val = xstrdup(trim(eq + 1));
		}
	}
	explicit_bzero(buf, len);
	free(buf);
	return val;
}

static char *
default_path(const char *env, const char *file)
{
	const char	*v = getenv(env), *home;
	char		*p;

	if (v != NULL && *v != '\0')
		return xstrdup(v);
	if ((home = getenv("HOME")) == NULL || *home == '\0')
		return NULL;
	xasprintf(&p, "%s/.aws/%s", home, file);
	return p;
}

/* Look in one file's section; 1 found, 0 not, -1 half (cause set). */
static int
profile_in(const char *path, const char *section, const char *profile,
    struct aws_creds *c, char **cause)
{
	char	*id, *secret;

	if (path == NULL)
		return 0;
	id = ini_get(path, section, "aws_access_key_id");
	secret = ini_get(path, section, "aws_secret_access_key");
	if (id == NULL && secret == NULL)
		return 0;
	if (id == NULL || secret == NULL || *id == '\0' || *secret == '\0') {
		xasprintf(cause, "%s: profile %s has %s but not %s", path,
		    profile, id ? "aws_access_key_id" :
		    "aws_secret_access_key", id ? "aws_secret_access_key" :
		    "aws_access_key_id");
		free(id);
		if (secret != NULL) {
			explicit_bzero(secret, strlen(secret));
			free(secret);
		}
		return -1;
	}
	c->access_key_id = id;
	c->secret_access_key = secret;
	c->session_token = ini_get(path, section, "aws_session_token");
	xasprintf(&c->source, "profile %s", profile);
	return 1;
}

int
creds_from_profile(const char *profile, const char *creds_file,
    const char *config_file, struct aws_creds *c, char **cause)
{
	char	*cf, *kf, *section;
	int	 r;

	memset(c, 0, sizeof *c);
	if (profile == NULL || *profile == '\0')
		profile = getenv("AWS_PROFILE");
	if (profile == NULL || *profile == '\0')
		profile = "default";
	kf = creds_file ? xstrdup(creds_file) :
	    default_path("AWS_SHARED_CREDENTIALS_FILE", "credentials");
	cf = config_file ? xstrdup(config_file) :
	    default_path("AWS_CONFIG_FILE", "config");
	r = profile_in(kf, profile, profile, c, cause);
	if (r == 0) {
		if (strcmp(profile, "default") == 0)
			section = xstrdup("default");
		else
			xasprintf(&section, "profile %s", profile);
		r = profile_in(cf, section, profile, c, cause);
		free(section);
	}
	free(kf);
	free(cf);
	if (r < 0)
		return -EINVAL;
	return r == 1 ? 0 : -ENOENT;
}
