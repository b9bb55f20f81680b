/* The cachekeeper client's command table. */
#ifndef CK_CLI_H
#define CK_CLI_H

#define CLI_EXIT_OK	0
#define CLI_EXIT_FAIL	1
#define CLI_EXIT_USAGE	2

struct cli_command {
	const char	*name;
	const char	*summary;
	int		(*run)(int argc, char **argv);	/* argv[0]: name */
};

extern const struct cli_command cli_validate_command;
extern const struct cli_command cli_status_command;
extern const struct cli_command cli_plan_command;
extern const struct cli_command cli_reconcile_command;
extern const struct cli_command cli_snapshot_command;
extern const struct cli_command cli_failover_command;
extern const struct cli_command cli_confirm_command;
extern const struct cli_command cli_snapshots_command;
extern const struct cli_command cli_snapshot_delete_command;

#endif
