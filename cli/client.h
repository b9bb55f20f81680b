/*
 * The CLI's side of the control socket: one HTTP request over the unix
 * socket with libcurl (CURLOPT_UNIX_SOCKET_PATH), JSON in and out, and the
 * output helpers the commands share (colour only on a terminal and without
 * NO_COLOR, YAML rendering of JSON).
 */
#ifndef CK_CLI_CLIENT_H
#define CK_CLI_CLIENT_H

#include <stdbool.h>
#include <stdio.h>

#include <jansson.h>

#define CLIENT_DEFAULT_SOCKET	"/run/cachekeeper/control.sock"
#define CLIENT_TIMEOUT_MS	120000	/* snapshots may take a while */

/*
 * The socket to use: --socket, else $CACHEKEEPER_SOCKET, else the
 * control_socket of the daemon config given with --config, else the
 * default. Set by the commands' option parsers.
 */
extern const char	*client_socket;
extern const char	*client_config;

/*
 * method path [body]: 0 and *out (the decoded JSON answer, the caller's)
 * with *status the HTTP status; -1 with *err (a sentence for people, the
 * caller frees) when the daemon cannot be reached or answers no JSON.
 */
int	 client_call(const char *method, const char *path, const char *body,
	    long *status, json_t **out, char **err);
/* The message of an error answer, or a generic one. */
const char *client_error_message(json_t *answer, long status);

/* Common options: returns true when the option was one of them. */
bool	 client_option(int ch, const char *arg);
#define CLIENT_OPT_SOCKET	1000
#define CLIENT_OPT_CONFIG	1001
#define CLIENT_LONGOPTS \
	{ "socket", required_argument, NULL, CLIENT_OPT_SOCKET }, \
	{ "config", required_argument, NULL, CLIENT_OPT_CONFIG }

/* Colour: "" when off. */
bool	 out_colour(FILE *);
const char *out_phase_colour(FILE *, const char *phase);
const char *out_reset(FILE *);
void	 out_yaml(FILE *, json_t *);

#endif
