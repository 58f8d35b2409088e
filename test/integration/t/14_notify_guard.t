# A listener that stops reading its connection holds the NOTIFY queue's
# tail.  The background worker sees the queue pass
# presence.notify_queue_warning (tiny here: 0.001%), logs one WARNING
# naming that session, and after presence.stalled_listener_timeout (1 s)
# terminates it; the queue then drains.
#
# First (issue 19, 8): listeners that hold the tail without being blocked
# on their client (one idle in a transaction, one in pg_sleep) are named
# with the reason and never terminated; a client that never listened but
# is slow to read a large result (blocked writing to it), and an idle
# session, are neither named nor terminated.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use PresenceTest;

presence_node(conf => [ "presence.notify_queue_warning = 0.00001",
	"presence.stalled_listener_timeout = '1s'" ]);

my $admin = connect_db();
my $off0 = log_offset();

# A listener idle in a transaction, and one in a long statement.
my ($in_xact_child, $in_xact_pid) = spawn_client('LISTEN tep_broadcast', 'BEGIN', 'SELECT 1');
pipe(my $sleep_r, my $sleep_w) or die "pipe: $!";
my $sleep_child = fork // die "fork: $!";
if ($sleep_child == 0) {
	close $sleep_r;
	my $dbh = connect_db();
	$dbh->do('LISTEN tep_broadcast');
	syswrite $sleep_w, "$dbh->{pg_pid}\n";
	close $sleep_w;
	$dbh->do('SELECT pg_sleep(60)');
	PresenceTest::child_exit(0);
}
close $sleep_w;
chomp(my $sleep_pid = <$sleep_r> // die 'pg_sleep listener failed');
close $sleep_r;
# A client that never listened, not reading a large result (psql writes it
# into a pipe nobody reads), and an idle session that never listened.
my $node = PresenceTest::node();
local $ENV{PGAPPNAME} = 'slow-reader';
open(my $slow, '-|', 'psql', '-X', '-h', $node->host, '-p', $node->port, '-d', 'postgres', '-c',
	q{COPY (SELECT repeat('x', 1000) FROM generate_series(1, 200000)) TO STDOUT}) or die "psql: $!";
my $idle = connect_db();
my $idle_pid = $idle->{pg_pid};
my $slow_pid;
for (1 .. 100) {
	$slow_pid = $admin->selectrow_array(q{SELECT pid FROM pg_stat_activity
	    WHERE application_name = 'slow-reader' AND wait_event = 'ClientWrite'});
	last if $slow_pid;
	sleep 0.05;
}
ok($slow_pid, 'the slow client blocks its backend writing its result');

my $writer = connect_db();
$writer->do(q{SELECT presence_worker_start('guard-w', '1 hour')});
$writer->do(q{SELECT presence_track('guard:pre', g, 'user', worker_id => 'guard-w')
               FROM generate_series(1, 3000) g});
my $warning;
for (1 .. 100) {
	($warning) = grep { /presence worker WARNING:  presence: the NOTIFY queue is/ } split /\n/, log_since($off0);
	last if $warning;
	sleep 0.05;
}
ok($warning, 'the queue above the mark: a WARNING');
sleep 2;    # past the timeout, several ticks
my $detail = log_since($off0);
like($detail, qr/pid $in_xact_pid \(application "[^"]*"\): a listener idle in transaction \(wait event "ClientRead"\) for \d+ s/,
	'  naming the listener idle in a transaction, and why');
like($detail, qr/pid $sleep_pid \(application "[^"]*"\): a listener active \(wait event "PgSleep"\) for \d+ s/,
	'  naming the listener in pg_sleep, and why');
unlike($detail, qr/pid $slow_pid\b/, '  not the slow client that never listened');
unlike($detail, qr/pid $idle_pid\b/, '  nor the idle session');
unlike($detail, qr/terminated session/, 'nobody is terminated');
is($admin->selectrow_array(q{SELECT count(*) FROM pg_stat_activity WHERE pid IN (?, ?, ?)},
	undef, $in_xact_pid, $sleep_pid, $slow_pid), 3, '  all three are still there');

# Their end frees the tail; the queue drains below the mark.
kill 'KILL', $in_xact_child, $sleep_child;
waitpid $_, 0 for $in_xact_child, $sleep_child;
$admin->selectrow_array('SELECT pg_terminate_backend(?)', undef, $_) for $in_xact_pid, $sleep_pid, $slow_pid;
close $slow;
my $usage0 = 1;
for (1 .. 100) {
	$writer->do(q{SELECT pg_notify('guard', 'x')});
	$usage0 = $admin->selectrow_array('SELECT pg_notification_queue_usage()');
	last if $usage0 < 0.00001;
	sleep 0.1;
}
cmp_ok($usage0, '<', 0.00001, 'the queue drains once they are gone');
sleep 0.5;    # a tick sees it below the mark
my $off = log_offset();

# The stalled listener: LISTENs, then never reads again.
my ($child, $stalled_pid) = spawn_client('LISTEN tep_broadcast');

# About 6 MB of diffs: far more than the stalled session's socket buffers.
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

# The worker logs the termination after it signals the session: wait for
# the line rather than race it.
$node->wait_for_log(qr/terminated session $stalled_pid,/, $off);
my $log = log_since($off);
# The diffs were queued by the statements before $t0, so the worker may
# have seen the session blocked before it: its own LOG line says how long.
my ($blocked_ms) = $log =~ /terminated session $stalled_pid, a listener blocked writing notifications to its client for (\d+) ms/;
cmp_ok($blocked_ms // 0, '>=', 1000, '  not before presence.stalled_listener_timeout (as the worker saw it)');
my @warnings = grep { /presence worker WARNING:  presence: the NOTIFY queue is/ } split /\n/, $log;
is(scalar @warnings, 1, 'one WARNING for the crossing, not one per tick');
like($log, qr/Listening sessions that may hold its tail: pid $stalled_pid \(application "presence-integ"\): a listener blocked writing notifications to its client/,
	'  naming the stalled session first');
like($log, qr/presence: terminated session $stalled_pid, a listener blocked writing notifications to its client/,
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
