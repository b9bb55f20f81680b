/* The CLI's control socket client and output helpers; see client.h. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "client.h"
#include "dconf.h"
#include "diag.h"
#include "util.h"

const char	*client_socket;
const char	*client_config;
static char	*socket_from_config;

bool
client_option(int ch, const char *arg)
{
	switch (ch) {
	case CLIENT_OPT_SOCKET:
		client_socket = arg;
		return true;
	case CLIENT_OPT_CONFIG:
		client_config = arg;
		return true;
	}
	return false;
}

static const char *
socket_path(void)
{
	const char	*e = getenv("CACHEKEEPER_SOCKET");
	struct diags	 d;
	struct dconf	*c;

	if (client_socket != NULL)
		return client_socket;
	if (e != NULL && *e != '\0')
		return e;
	if (client_config != NULL && socket_from_config == NULL) {
		diags_init(&d);
		if ((c = dconf_load(client_config, 0, &d)) != NULL) {
			socket_from_config = xstrdup(c->control_socket);
			dconf_free(c);
		}
		diags_free(&d);
	}
	return socket_from_config ? socket_from_config : CLIENT_DEFAULT_SOCKET;
}

static size_t
collect(char *p, size_t size, size_t n, void *arg)
{
	strbuf_add(arg, p, size * n);
	return size * n;
}

int
client_call(const char *method, const char *path, const char *body,
    long *status, json_t **out, char **err)
{
	CURL			*h;
	CURLcode		 rc;
	struct curl_slist	*hdrs = NULL;
	struct strbuf		 sb;
	json_error_t		 je;
	const char		*sock = socket_path();
	char			*url;
	int			 r = -1;

	*out = NULL;
	*status = 0;
	if ((h = curl_easy_init()) == NULL) {
		xasprintf(err, "cannot initialise libcurl");
		return -1;
	}
	strbuf_init(&sb);
	xasprintf(&url, "http://cachekeeperd%s", path);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, sock);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)CLIENT_TIMEOUT_MS);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &sb);
	if (body != NULL) {
		hdrs = curl_slist_append(hdrs, "Content-Type: "
		    "application/json");
		hdrs = curl_slist_append(hdrs, "Expect:");
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	} else if (strcmp(method, "POST") == 0) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, 0L);
	}
	rc = curl_easy_perform(h);
	if (rc != CURLE_OK) {
		if (rc == CURLE_COULDNT_CONNECT)
			xasprintf(err, "cannot reach cachekeeperd at %s: %s "
			    "(is it running? --socket or CACHEKEEPER_SOCKET "
			    "name another socket)", sock, access(sock, F_OK) ?
			    strerror(errno) : "connection refused");
		else
			xasprintf(err, "cachekeeperd at %s: %s", sock,
			    curl_easy_strerror(rc));
		goto out;
	}
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
	if ((*out = json_loadb(sb.s ? sb.s : "", sb.len, 0, &je)) == NULL) {
		xasprintf(err, "cachekeeperd at %s answered HTTP %ld without "
		    "JSON: %s", sock, *status, je.text);
		goto out;
	}
	r = 0;
out:
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(h);
	strbuf_free(&sb);
	free(url);
	return r;
}

const char *
client_error_message(json_t *a, long status)
{
	const char	*m = json_string_value(json_object_get(json_object_get(a,
	    "error"), "message"));
	static char	 buf[64];

	if (m != NULL)
		return m;
	snprintf(buf, sizeof buf, "HTTP %ld", status);
	return buf;
}

bool
out_colour(FILE *f)
{
	const char	*nc = getenv("NO_COLOR");

	return isatty(fileno(f)) && (nc == NULL || *nc == '\0');
}

const char *
out_phase_colour(FILE *f, const char *phase)
{
	if (!out_colour(f) || phase == NULL)
		return "";
	if (strcmp(phase, "available") == 0)
		return "\033[32m";
	if (strcmp(phase, "degraded") == 0 || strcmp(phase, "failed") == 0 ||
	    strcmp(phase, "spec-error") == 0)
		return "\033[31m";
	if (strcmp(phase, "creating") == 0 || strcmp(phase, "modifying") == 0 ||
	    strcmp(phase, "deleting") == 0)
		return "\033[33m";
	return "\033[2m";
}

const char *
out_reset(FILE *f)
{
	return out_colour(f) ? "\033[0m" : "";
}

/* --- YAML from JSON ---------------------------------------------------- */

static bool
plain_ok(const char *s)
{
	static const char *const special[] = { "true", "false", "null", "yes",
	    "no", "on", "off", "~", NULL };
	const char	*p;
	size_t		 i;

	if (*s == '\0' || isspace((unsigned char)*s) ||
	    isspace((unsigned char)s[strlen(s) - 1]))
		return false;
	for (i = 0; special[i] != NULL; i++)
		if (strcasecmp(s, special[i]) == 0)
			return false;
	if (strchr("-?:,[]{}#&*!|>'\"%@`0123456789.+", *s) != NULL)
		return false;
	for (p = s; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == '#' || (*p == ':' &&
		    (p[1] == ' ' || p[1] == '\0')))
			return false;
	return true;
}

static void
yaml_string(FILE *f, const char *s)
{
	const char	*p;

	if (plain_ok(s)) {
		fputs(s, f);
		return;
	}
	fputc('"', f);
	for (p = s; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(f, "\\%c", *p);
		else if (*p == '\n')
			fputs("\\n", f);
		else if ((unsigned char)*p < 0x20)
			fprintf(f, "\\x%02x", (unsigned char)*p);
		else
			fputc(*p, f);
	}
	fputc('"', f);
}

static void
yaml_scalar(FILE *f, json_t *j)
{
	switch (json_typeof(j)) {
	case JSON_STRING:
		yaml_string(f, json_string_value(j));
		break;
	case JSON_INTEGER:
		fprintf(f, "%" JSON_INTEGER_FORMAT, json_integer_value(j));
		break;
	case JSON_REAL:
		fprintf(f, "%.17g", json_real_value(j));
		break;
	case JSON_TRUE:
		fputs("true", f);
		break;
	case JSON_FALSE:
		fputs("false", f);
		break;
	default:
		fputs("null", f);
		break;
	}
}

static bool
empty_coll(json_t *j)
{
	return (json_is_object(j) && json_object_size(j) == 0) ||
	    (json_is_array(j) && json_array_size(j) == 0);
}

static void
yaml_node(FILE *f, json_t *j, int indent)
{
	const char	*k;
	json_t		*v;
	size_t		 i;

	if (json_is_object(j)) {
		json_object_foreach(j, k, v) {
			fprintf(f, "%*s", indent, "");
			yaml_string(f, k);
			fputc(':', f);
			if (empty_coll(v))
				fputs(json_is_object(v) ? " {}\n" : " []\n", f);
			else if (json_is_object(v) || json_is_array(v)) {
				fputc('\n', f);
				yaml_node(f, v, indent + 2);
			} else {
				fputc(' ', f);
				yaml_scalar(f, v);
				fputc('\n', f);
			}
		}
	} else if (json_is_array(j)) {
		json_array_foreach(j, i, v) {
			fprintf(f, "%*s- ", indent, "");
			if (empty_coll(v))
				fputs(json_is_object(v) ? "{}\n" : "[]\n", f);
			else if (json_is_object(v)) {
				/* The first key on the dash's line. */
				char	*buf = NULL;
				size_t	 len = 0;
				FILE	*m = open_memstream(&buf, &len);

				yaml_node(m, v, indent + 2);
				fclose(m);
				fputs(buf + indent + 2, f);
				free(buf);
			} else if (json_is_array(v)) {
				fputc('\n', f);
				yaml_node(f, v, indent + 2);
			} else {
				yaml_scalar(f, v);
				fputc('\n', f);
			}
		}
	} else {
		fprintf(f, "%*s", indent, "");
		yaml_scalar(f, j);
		fputc('\n', f);
	}
}

void
out_yaml(FILE *f, json_t *j)
{
	yaml_node(f, j, 0);
}
