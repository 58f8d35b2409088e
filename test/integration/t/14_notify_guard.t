# A listener that stops reading its connection holds the NOTIFY queue's
# tail.  The background worker sees the queue pass
# presence.notify_queue_warning (tiny here: 0.001%), logs one WARNING
# naming that session, and after presence.stalled_listener_timeout (1 s)
# terminates it; the queue then drains.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use PresenceTest;

presence_node(conf => [ "presence.notify_queue_warning = 0.00001",
	"presence.stalled_listener_timeout = '1s'" ]);

my $admin = connect_db();
my $off = log_offset();

# The stalled listener: LISTENs, then never reads again.
my ($child, $stalled_pid) = spawn_client('LISTEN tep_broadcast');

# About 6 MB of diffs: far more than the stalled session's socket buffers.
my $writer = connect_db();
$writer->do(q{SELECT presence_worker_start('guard-w', '1 hour')});
$writer->do(q{SELECT presence_track('guard:t', g, 'user', worker_id => 'guard-w')
               FROM generate_series(1, 5000) g});
$writer->do(q{SELECT presence_set_status('guard:t', g, 'busy', repeat('n', 1000), 0, 'guard-w')
               FROM generate_series(1, 5000) g});
my $t0 = time;

my $blocked;
for (1 .. 100) {
	$blocked = $admin->selectrow_array(q{SELECT wait_event FROM pg_stat_activity WHERE pid = ?},
		undef, $stalled_pid) // '';
	last if $blocked eq 'ClientWrite';
	sleep 0.05;
}
is($blocked, 'ClientWrite', 'the listener that stopped reading blocks its backend writing to it');

my $gone = 0;
while (time < $t0 + 5) {
	$gone = !$admin->selectrow_array(q{SELECT count(*) FROM pg_stat_activity WHERE pid = ?},
		undef, $stalled_pid);
	last if $gone;
	sleep 0.05;
}
ok($gone, 'the stalled session is terminated');
my $after = time - $t0;
diag(sprintf 'terminated %s ms after the diffs were queued', ms($after));
cmp_ok($after, '<=', 3, '  within the timeout and a few ticks');

my $log = log_since($off);
# The diffs were queued by the statements before $t0, so the worker may
# have seen the session blocked before it: its own LOG line says how long.
my ($blocked_ms) = $log =~ /terminated session $stalled_pid, blocked writing to its client for (\d+) ms/;
cmp_ok($blocked_ms // 0, '>=', 1000, '  not before presence.stalled_listener_timeout (as the worker saw it)');
my @warnings = grep { /presence worker WARNING:  presence: the NOTIFY queue is/ } split /\n/, $log;
is(scalar @warnings, 1, 'one WARNING for the crossing, not one per tick');
like($log, qr/The sessions most likely holding its tail: pid $stalled_pid \(application "presence-integ", blocked writing to its client/,
	'  naming the stalled session first');
like($log, qr/presence: terminated session $stalled_pid, blocked writing to its client/,
	'a LOG line says which session was terminated and why');

# With the tail free, the queue drains (the next notifying commit advances it).
my $usage = 1;
while (time < $t0 + 8) {
	$writer->do(q{SELECT pg_notify('guard', 'x')});
	$usage = $admin->selectrow_array('SELECT pg_notification_queue_usage()');
	last if $usage < 0.00001;
	sleep 0.1;
}
cmp_ok($usage, '<', 0.00001, 'the queue drains below the warning mark');

kill 'KILL', $child;
waitpid $child, 0;
$writer->do(q{SELECT presence_worker_stop('guard-w')});
server_log_ok(warnings => qr/presence: the NOTIFY queue is/);
done_testing();
