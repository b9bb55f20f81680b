/*
 * Local node processes and their files; see node.h. Starting a node forks
 * twice so the redis-server is reparented to init (or the nearest
 * subreaper) at once: the daemon never has to reap it, and stopping the
 * daemon never takes a node with it.
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "local.h"
#include "node.h"
#include "util.h"

char *
node_path(const char *dir, const char *file)
{
	char	*p;

	xasprintf(&p, "%s/%s", dir, file);
	return p;
}

static void
conf_persistence(struct strbuf *sb, enum persistence p)
{
	switch (p) {
	case PERSIST_RDB:
		strbuf_puts(sb, "save 3600 1 300 100 60 10000\n"
		    "appendonly no\n");
		break;
	case PERSIST_AOF:
		strbuf_puts(sb, "save \"\"\nappendonly yes\n"
		    "appendfsync everysec\n");
		break;
	case PERSIST_NONE:
		strbuf_puts(sb, "save \"\"\nappendonly no\n");
		break;
	}
}

int
node_conf_write(const struct node_conf *c, char **cause)
{
	struct strbuf	 sb;
	char		*sockdir, *sock, *conf;
	size_t		 i;
	int		 r;

	sockdir = node_path(c->dir, "sock");
	sock = node_path(sockdir, "redis.sock");
	if (strlen(sock) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		xasprintf(cause, "unix socket path %s is longer than %zu bytes;"
		    " use a shorter local.data_dir", sock,
		    sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
		free(sock);
		free(sockdir);
		return -ENAMETOOLONG;
	}
	if ((r = mkdir_p(sockdir, 0700)) != 0 || chmod(c->dir, 0700) == -1) {
		xasprintf(cause, "cannot create %s: %s", sockdir,
		    strerror(r ? -r : errno));
		free(sock);
		free(sockdir);
		return r ? r : -errno;
	}
	strbuf_init(&sb);
	strbuf_puts(&sb, "# Written by cachekeeperd; it is rewritten on every "
	    "start of this node.\n");
	if (c->tls_ca != NULL)
		/* Clients, replicas and cluster peers speak TLS only; the
		 * daemon keeps the (0700) unix socket. */
		strbuf_printf(&sb, "bind %s\nport 0\ntls-port %d\n"
		    "tls-cert-file %s\ntls-key-file %s\ntls-ca-cert-file %s\n"
		    "tls-auth-clients no\ntls-replication yes\n%s",
		    c->bind, c->port, c->tls_cert, c->tls_key, c->tls_ca,
		    c->cluster ? "tls-cluster yes\n" : "");
	else
		strbuf_printf(&sb, "bind %s\nport %d\n", c->bind, c->port);
	strbuf_puts(&sb, "protected-mode yes\ndaemonize no\nsupervised no\n");
	strbuf_printf(&sb, "dir %s\npidfile %s/redis.pid\nlogfile %s/redis.log\n"
	    "dbfilename dump.rdb\n", c->dir, c->dir, c->dir);
	strbuf_printf(&sb, "unixsocket %s\nunixsocketperm 700\n", sock);
	/* Redis 7.0 waits 5 s before a first sync by default; a replica
	 * that never synced can never be promoted. */
	strbuf_puts(&sb, "repl-diskless-sync yes\nrepl-diskless-sync-delay 0\n");
	conf_persistence(&sb, c->persistence);
	if (c->maxmemory > 0)
		strbuf_printf(&sb, "maxmemory %llu\n",
		    (unsigned long long)c->maxmemory);
	if (c->admin_user != NULL && c->admin_pass != NULL) {
		char h[66];

		/*
		 * The application's user cannot administer the node; the
		 * daemon's can, and replicas log in as it. Only hashes of
		 * the passwords are in the rules; masterauth needs the
		 * daemon's own in clear (this file is 0600).
		 */
		if (c->password != NULL) {
			lsecret_sha256(c->password, h);
			strbuf_printf(&sb, "user default on %s ~* &* +@all "
			    "-@admin -@dangerous +info\n", h);
		} else
			strbuf_puts(&sb, "user default off\n");
		lsecret_sha256(c->admin_pass, h);
		strbuf_printf(&sb, "user %s on %s ~* &* +@all\n"
		    "masteruser %s\nmasterauth \"%s\"\n", c->admin_user, h,
		    c->admin_user, c->admin_pass);
		explicit_bzero(h, sizeof h);
	} else if (c->password != NULL)
		strbuf_printf(&sb, "requirepass \"%s\"\nmasterauth \"%s\"\n",
		    c->password, c->password);
	if (c->cluster) {
		/*
		 * Redis Cluster, each node with its own nodes.conf in its
		 * directory. Replicas stay in their shard (no replica
		 * migration: the daemon decides the shape), and a replica
		 * takes over however long its link was down, as ElastiCache
		 * does: a stale replica beats a shard without a primary.
		 */
		strbuf_printf(&sb, "cluster-enabled yes\ncluster-config-file "
		    "%s/nodes.conf\ncluster-node-timeout %llu\n"
		    "cluster-allow-replica-migration no\n"
		    "cluster-replica-validity-factor 0\n"
		    "cluster-require-full-coverage yes\n", c->dir,
		    (unsigned long long)c->cluster_node_timeout_ms);
		if (c->cluster_port != 0)
			strbuf_printf(&sb, "cluster-port %d\n",
			    c->cluster_port);
	} else if (c->replicaof_host != NULL)
		strbuf_printf(&sb, "replicaof %s %d\n", c->replicaof_host,
		    c->replicaof_port);
	for (i = 0; c->parameters != NULL && i < c->parameters->n; i++)
		strbuf_printf(&sb, "%s \"%s\"\n", c->parameters->keys[i],
		    c->parameters->values[i]);
	conf = node_path(c->dir, "redis.conf");
	/* 0600: the file may hold the auth token. */
	r = file_write_atomic(conf, sb.s, sb.len, 0600, 1);
	if (r != 0)
		xasprintf(cause, "cannot write %s: %s", conf, strerror(-r));
	explicit_bzero(sb.s, sb.len);
	strbuf_free(&sb);
	free(conf);
	free(sock);
	free(sockdir);
	return r;
}

int
node_spawn(const char *redis_server, const char *dir, pid_t *pidp,
    char **cause)
{
	int	 pfd[2], status, fd;
	pid_t	 child, node = 0;
	char	*conf;

	if (node_manager_units(NULL))
		return node_unit_start(dir, pidp, cause);
	if (pipe2(pfd, O_CLOEXEC) == -1) {
		xasprintf(cause, "pipe: %s", strerror(errno));
		return -errno;
	}
	conf = node_path(dir, "redis.conf");
	child = fork();
	if (child == -1) {
		xasprintf(cause, "fork: %s", strerror(errno));
		free(conf);
		close(pfd[0]);
		close(pfd[1]);
		return -EAGAIN;
	}
	if (child == 0) {
		/* First child: new session, fork the node, report its pid. */
		setsid();
		node = fork();
		if (node == 0) {
			sigset_t all;

			sigemptyset(&all);
			sigprocmask(SIG_SETMASK, &all, NULL);
			signal(SIGPIPE, SIG_DFL);
			signal(SIGHUP, SIG_DFL);
			if ((fd = open("/dev/null", O_RDWR)) != -1) {
				dup2(fd, 0);
				dup2(fd, 1);
				dup2(fd, 2);
				if (fd > 2)
					close(fd);
			}
			if (chdir(dir) == -1)
				_exit(127);
			execl(redis_server, redis_server, conf, (char *)NULL);
			_exit(127);
		}
		(void)!write(pfd[1], &node, sizeof node);
		_exit(node > 0 ? 0 : 1);
	}
	close(pfd[1]);
	if (read(pfd[0], &node, sizeof node) != sizeof node)
		node = -1;
	/*
	 * The node holds the close-on-exec write end until it execs: EOF
	 * here means redis-server runs (its pid shows as redis from now on).
	 */
	while (node > 0) {
		char c;
		ssize_t n = read(pfd[0], &c, 1);
		if (n == 0 || (n == -1 && errno != EINTR))
			break;
	}
	close(pfd[0]);
	while (waitpid(child, &status, 0) == -1 && errno == EINTR)
		;
	free(conf);
	if (node <= 0) {
		xasprintf(cause, "could not start %s", redis_server);
		return -ECHILD;
	}
	*pidp = node;
	return 0;
}

bool
node_pid_alive(pid_t pid)
{
	char	 path[64], buf[256];
	ssize_t	 n;
	int	 fd;

	if (pid <= 0 || kill(pid, 0) == -1)
		return false;
	/* Guard against a reused pid: it must still be a redis-server. */
	snprintf(path, sizeof path, "/proc/%ld/cmdline", (long)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return false;
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	/* A zombie has an empty cmdline and is not alive. */
	return strstr(buf, "redis-server") != NULL ||
	    strstr(buf, "redis") != NULL;
}

pid_t
node_read_pid(const char *dir)
{
	char	*p = node_path(dir, "redis.pid"), *buf;
	size_t	 len;
	long	 v = 0;

	if (read_file_bounded(p, 64, &buf, &len) == 0) {
		v = strtol(buf, NULL, 10);
		free(buf);
	}
	free(p);
	return (pid_t)v;
}

void
node_kill(const char *dir, pid_t pid)
{
	if (node_manager_units(NULL)) {
		node_unit_kill(dir, pid);
		return;
	}
	if (node_pid_alive(pid))
		kill(pid, SIGKILL);
}

static int
remove_tree(int dfd, const char *name)
{
	int	 fd;
	DIR	*d;
	struct dirent *de;

	if (unlinkat(dfd, name, 0) == 0 || errno == ENOENT)
		return 0;
	if (errno != EISDIR && errno != EPERM)
		return -errno;
	if ((fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC)) == -1)
		return -errno;
	if ((d = fdopendir(fd)) == NULL) {
		close(fd);
		return -errno;
	}
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		remove_tree(dirfd(d), de->d_name);
	}
	closedir(d);
	if (unlinkat(dfd, name, AT_REMOVEDIR) == -1 && errno != ENOENT)
		return -errno;
	return 0;
}

int
node_remove_dir(const char *dir)
{
	return remove_tree(AT_FDCWD, dir);
}

char *
node_server_version(const char *redis_server)
{
	char	 line[256], *v, *end;
	ssize_t	 n;
	size_t	 len = 0;
	pid_t	 pid;
	int	 pfd[2], status, fd;

	/*
	 * Run once at start-up, not on the loop's hot path. No shell: the
	 * path is an argument as it is, whatever characters it holds.
	 */
	if (pipe2(pfd, O_CLOEXEC) == -1)
		return NULL;
	if ((pid = fork()) == -1) {
		close(pfd[0]);
		close(pfd[1]);
		return NULL;
	}
	if (pid == 0) {
		dup2(pfd[1], 1);
		if ((fd = open("/dev/null", O_RDWR)) != -1) {
			dup2(fd, 0);
			dup2(fd, 2);
		}
		execl(redis_server, redis_server, "--version", (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	while (len < sizeof line - 1 && (n = read(pfd[0], line + len,
	    sizeof line - 1 - len)) != 0) {
		if (n == -1) {
			if (errno == EINTR)
				continue;
			break;
		}
		len += (size_t)n;
	}
	close(pfd[0]);
	while (waitpid(pid, &status, 0) == -1 && errno == EINTR)
		;
	line[len] = '\0';
	if ((v = strstr(line, "v=")) == NULL)
		return NULL;
	v += 2;
	end = v + strcspn(v, " \n");
	*end = '\0';
	return xstrdup(v);
}
