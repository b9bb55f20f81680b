# bash completion for cachekeeper(1).
#
# Completes commands, global and per-command options and their values,
# spec files and directories for validate and plan, and cluster names for
# the commands that take them. Cluster names come from the running daemon
# (`cachekeeper status -o json`, two seconds at most); when it does not
# answer nothing is offered and nothing is printed. Works with or without
# the bash-completion package. Installed as
# $(datadir)/bash-completion/completions/cachekeeper.

_cachekeeper_commands="status plan validate reconcile snapshot snapshots
snapshot-delete failover confirm-deletions"
_cachekeeper_global_opts="--socket --help --version"

# Print the snapshot names the daemon lists, one a line; nothing on error.
_cachekeeper_snapshots()
{
	local bin=$1 json
	shift
	command -v "$bin" >/dev/null 2>&1 || return 0
	json=$(timeout 2 "$bin" "$@" snapshots -o json 2>/dev/null) ||
	    return 0
	printf '%s\n' "$json" | sed -n 's/^ *"name": "\([a-z0-9-]*\)".*/\1/p'
}

# Print the cluster names the daemon knows, one a line; nothing on error.
# $1 is the cachekeeper binary, the rest are global options to pass on.
_cachekeeper_clusters()
{
	local bin=$1 json
	shift
	command -v "$bin" >/dev/null 2>&1 || return 0
	if command -v timeout >/dev/null 2>&1; then
		json=$(timeout 2 "$bin" "$@" status -o json 2>/dev/null) ||
		    return 0
	else
		json=$("$bin" "$@" status -o json 2>/dev/null) || return 0
	fi
	[[ -n $json ]] || return 0
	# A cluster is an object with both "name" and "phase"; node objects
	# may have names too, so a plain grep is only the fallback.
	if command -v python3 >/dev/null 2>&1; then
		python3 -c '
import json, sys
def walk(o):
    if isinstance(o, dict):
        if isinstance(o.get("name"), str) and "phase" in o:
            print(o["name"])
        else:
            for v in o.values():
                walk(v)
    elif isinstance(o, list):
        for v in o:
            walk(v)
try:
    walk(json.loads(sys.stdin.read()))
except Exception:
    pass
' <<<"$json" 2>/dev/null
	else
		printf '%s\n' "$json" |
		    grep -o '"name"[[:space:]]*:[[:space:]]*"[a-z][a-z0-9-]*"' |
		    sed 's/.*"\([a-z][a-z0-9-]*\)"$/\1/' | sort -u
	fi
	return 0
}

# Spec files (*.yaml, *.yml) and directories.
_cachekeeper_specfiles()
{
	local cur=$1
	compopt -o filenames 2>/dev/null
	COMPREPLY+=($(compgen -d -- "$cur"))
	COMPREPLY+=($(compgen -f -X '!*.yaml' -- "$cur"))
	COMPREPLY+=($(compgen -f -X '!*.yml' -- "$cur"))
}

_cachekeeper()
{
	local cur prev bin cmd="" i w nargs=0
	local -a gopts=()
	COMPREPLY=()
	cur=${COMP_WORDS[COMP_CWORD]}
	prev=
	((COMP_CWORD > 0)) && prev=${COMP_WORDS[COMP_CWORD - 1]}
	bin=${COMP_WORDS[0]}

	# Find the command, the global options worth passing on to the
	# daemon query, and how many arguments the command already has.
	for ((i = 1; i < COMP_CWORD; i++)); do
		w=${COMP_WORDS[i]}
		case $w in
		--socket|--output|-o|--default-backend|--config|--name|--shard|--interval)
			if [[ $w == --socket ]] && ((i + 1 < COMP_CWORD)); then
				gopts=(--socket "${COMP_WORDS[i + 1]}")
			fi
			((i++))
			continue
			;;
		--socket=*)
			gopts=("$w")
			continue
			;;
		-*)
			continue
			;;
		esac
		if [[ -z $cmd ]]; then
			cmd=$w
		else
			((nargs++))
		fi
	done

	# Values of options.
	case $prev in
	--socket)
		compopt -o filenames 2>/dev/null
		COMPREPLY=($(compgen -f -- "$cur"))
		return 0
		;;
	-o|--output)
		if [[ $cmd == plan ]]; then
			COMPREPLY=($(compgen -W "text json" -- "$cur"))
		elif [[ $cmd == snapshots ]]; then
			COMPREPLY=($(compgen -W "table json" -- "$cur"))
		else
			COMPREPLY=($(compgen -W "table json yaml" -- "$cur"))
		fi
		return 0
		;;
	--config)
		compopt -o filenames 2>/dev/null
		COMPREPLY=($(compgen -f -- "$cur"))
		return 0
		;;
	--name|--shard|--interval)
		return 0
		;;
	--default-backend)
		COMPREPLY=($(compgen -W "local elasticache" -- "$cur"))
		return 0
		;;
	esac

	if [[ -z $cmd ]]; then
		if [[ $cur == -* ]]; then
			COMPREPLY=($(compgen -W "$_cachekeeper_global_opts" -- "$cur"))
		else
			COMPREPLY=($(compgen -W "$_cachekeeper_commands" -- "$cur"))
		fi
		return 0
	fi

	if [[ $cur == -* ]]; then
		case $cmd in
		validate)
			COMPREPLY=($(compgen -W "--json --default-backend --help" \
			    -- "$cur"))
			;;
		status)
			COMPREPLY=($(compgen -W "--output -o --watch -w --interval \
			    --socket --config --help" -- "$cur"))
			;;
		plan)
			COMPREPLY=($(compgen -W "--output -o --socket --config \
			    --help" -- "$cur"))
			;;
		snapshot)
			COMPREPLY=($(compgen -W "--name --socket --config --help" \
			    -- "$cur"))
			;;
		failover)
			COMPREPLY=($(compgen -W "--shard --socket --config --help" \
			    -- "$cur"))
			;;
		snapshots)
			COMPREPLY=($(compgen -W "--output -o --socket --config \
			    --help" -- "$cur"))
			;;
		*)
			COMPREPLY=($(compgen -W "--socket --config --help" \
			    -- "$cur"))
			;;
		esac
		return 0
	fi

	case $cmd in
	validate)
		_cachekeeper_specfiles "$cur"
		;;
	plan)
		# Spec files, or the names of running clusters.
		_cachekeeper_specfiles "$cur"
		COMPREPLY+=($(compgen -W "$(_cachekeeper_clusters "$bin" \
		    "${gopts[@]}")" -- "$cur"))
		;;
	confirm-deletions)
		COMPREPLY=($(compgen -W "$(_cachekeeper_clusters "$bin" \
		    "${gopts[@]}")" -- "$cur"))
		;;
	snapshot-delete)
		if ((nargs == 0)); then
			COMPREPLY=($(compgen -W "$(_cachekeeper_snapshots \
			    "$bin" "${gopts[@]}")" -- "$cur"))
		fi
		;;
	status|reconcile|snapshot|snapshots|failover)
		if ((nargs == 0)); then
			COMPREPLY=($(compgen -W "$(_cachekeeper_clusters "$bin" \
			    "${gopts[@]}")" -- "$cur"))
		fi
		;;
	esac
	return 0
}

complete -F _cachekeeper cachekeeper
