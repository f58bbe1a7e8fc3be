# The command agent of a Paddock test VM (run by busybox sh as PID 1).
# The host drops a script as ID.cmd into the channel directory; the agent
# runs it in its own session, which leaves ID.pid, ID.out and ID.err, and
# last ID.rc with the exit status. hostfs writes through to the host.
chan=$1
mkfifo /run/paddock-vm-idle
exec 3<>/run/paddock-vm-idle
: > "$chan/ready"
while :; do
	for cmd in "$chan"/*.cmd; do
		[ -e "$cmd" ] || continue
		id=${cmd%.cmd}
		mv "$cmd" "$id.sh"
		# The session leader writes ID.pid itself: once it exists, the
		# session does, and a signal to it reaches the whole script (one
		# write: the host reads it empty or whole).
		/bin/sh -c '
			setsid /bin/sh -c "echo \$\$ > \"\$0.pid\"
				exec /bin/sh \"\$0.sh\"" "$1" \
				< /dev/null > "$1.out" 2> "$1.err" &
			wait $!
			echo $? > "$1.rc.tmp"
			mv "$1.rc.tmp" "$1.rc"' run "$id" &
	done
	# Wait 50 ms without forking: a fork costs more than the whole poll here.
	read -t 0.05 _ <&3
done
