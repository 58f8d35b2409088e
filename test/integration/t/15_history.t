# Session history (presence.history = on): a row for each way a session
# ends, with its reason -- untrack, untrack_by_fd, clear, worker_stop,
# worker_restart, and pruned: a Tep heartbeat row gone stale, and a
# gateway killed with -9 whose connection-bound worker the background
# worker prunes.  presence_last_seen is now while present, the leave's
# time after it.  Retention: a day's partition older than
# presence.history_retention is dropped by the background worker while
# sessions come and go, and no leave of that load is lost or fails.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use PresenceTest;

presence_node(conf => [ 'presence.history = on' ]);
my $admin = connect_db();

# Poll a query until it returns the wanted value (or 30 s pass).
sub poll_until {
	my ($sql, $want) = @_;
	my $got;
	for (1 .. 300) {
		$got = $admin->selectrow_array($sql);
		last if defined $got && $got eq $want;
		sleep 0.1;
	}
	return $got;
}

sub reason_of {
	my ($worker, $fd) = @_;
	return $admin->selectrow_array(
		'SELECT string_agg(reason, \',\' ORDER BY left_ts) FROM presence_history(\'h:room\', 0, 9223372036854775807)'
		  . ' WHERE worker_id = ? AND fd = ?', undef, $worker, $fd);
}

# The SQL endings.
my $app = connect_db();
$app->do(q{SELECT presence_track('h:room', 1, 'user:a', worker_id => 'gw-1')});
$app->do(q{SELECT presence_track('h:room', 2, 'user:b', worker_id => 'gw-1')});
$app->do(q{SELECT presence_track('h:room', 3, 'user:c', worker_id => 'gw-2')});
$app->do(q{SELECT presence_track('h:room', 4, 'user:d', worker_id => 'gw-3')});
$app->do(q{SELECT presence_track('h:room', 5, 'user:e', worker_id => 'gw-4')});
$app->do(q{SELECT presence_untrack('h:room', 1, 'gw-1')});
$app->do(q{SELECT presence_untrack_by_fd(2, 'gw-1')});
$app->do(q{SELECT presence_clear('gw-2')});
$app->do(q{SELECT presence_worker_stop('gw-3')});
$app->do(q{SELECT presence_worker_start('gw-4')});
is(reason_of('gw-1', 1), 'untrack', 'untrack');
is(reason_of('gw-1', 2), 'untrack_by_fd', 'untrack_by_fd');
is(reason_of('gw-2', 3), 'clear', 'clear');
is(reason_of('gw-3', 4), 'worker_stop', 'worker_stop');
is(reason_of('gw-4', 5), 'worker_restart', 'worker_start of an id that had entries');

# A Tep heartbeat row gone stale: the background worker prunes it.
$admin->do(q{INSERT INTO tep_presence_worker (worker_id, last_seen_ts) VALUES ('tep-1', 1)});
$admin->do(q{INSERT INTO tep_presence (worker_id, topic, fd, principal_id, since_ts) VALUES ('tep-1', 'h:room', 6, 'user:f', 100)});
is(poll_until(q{SELECT count(*) FROM presence_history('h:room', 0, 9223372036854775807) WHERE worker_id = 'tep-1'}, 1),
	1, 'a stale Tep worker: its entry is pruned by the background worker');
is(reason_of('tep-1', 6), 'pruned', 'reason pruned');
is($admin->selectrow_array(q{SELECT joined_ts FROM presence_history('h:room', 0, 9223372036854775807) WHERE worker_id = 'tep-1'}),
	100, 'joined_ts is the entry\'s since_ts');

# A gateway killed with -9: its connection-bound worker is pruned.
my ($child, $backend_pid) = spawn_client(
	q{SELECT presence_track('h:room', 7, 'user:g', meta => '{"name": "Gil"}')});
my $wid = $admin->selectrow_array('SELECT worker_id FROM tep_presence_worker WHERE backend_pid = ?', undef, $backend_pid);
ok($wid, "the gateway's connection-bound worker $wid");
is($admin->selectrow_array(q{SELECT presence_last_seen('user:g') = trunc(extract(epoch FROM now()))::bigint}),
	1, 'last seen while present: now');
is($admin->selectrow_array(q{SELECT presence_last_seen('user:g', 'h:other')}), undef,
	'never seen in another topic: NULL');
kill 'KILL', $child;
waitpid $child, 0;
is(poll_until(qq{SELECT count(*) FROM presence_history('h:room', 0, 9223372036854775807) WHERE worker_id = '$wid'}, 1),
	1, 'the killed gateway\'s session is recorded once pruned');
is(reason_of($wid, 7), 'pruned', 'reason pruned');
is($admin->selectrow_array(q{SELECT meta->>'name' FROM presence_history('h:room', 0, 9223372036854775807) WHERE fd = 7}),
	'Gil', 'with the meta it had');
my $left = $admin->selectrow_array(qq{SELECT left_ts FROM presence_history('h:room', 0, 9223372036854775807) WHERE worker_id = '$wid'});
is($admin->selectrow_array(q{SELECT presence_last_seen('user:g')}), $left, 'last seen after the leave: its left_ts');
is($admin->selectrow_array(q{SELECT presence_last_seen('user:g', 'h:room')}), $left, '... in its topic too');

# Retention under load.  An old day's partition with a session in it.
$admin->do(q{CREATE TABLE presence_history_20000101 PARTITION OF presence_history
             FOR VALUES FROM (946684800) TO (946771200)});
$admin->do(q{INSERT INTO presence_history (topic, worker_id, fd, principal_id, kind, agent_id, meta, joined_ts, left_ts, reason)
             VALUES ('h:old', 'gw-old', 1, 'user:old', 'human', '', '{}', 946684800, 946684900, 'untrack')});
my $stop = state_dir() . '/stop';
my @load;
for my $w (1 .. 3) {
	pipe(my $r, my $wr) or die "pipe: $!";
	my $pid = fork // die "fork: $!";
	if ($pid == 0) {
		close $r;
		my $dbh = connect_db();
		my $n = 0;
		until (-e $stop) {
			$n++;
			$dbh->do(q{SELECT presence_track('h:load', ?, 'user:load', worker_id => ?)}, undef, $n, "load-$w");
			$dbh->do(q{SELECT presence_untrack('h:load', ?, ?)}, undef, $n, "load-$w");
		}
		syswrite $wr, "$n\n";
		child_exit(0);
	}
	close $wr;
	push @load, [ $pid, $r ];
}
sleep 0.5;
# A new retention applies on the background worker's next tick.
$admin->do(q{ALTER SYSTEM SET presence.history_retention = '2d'});
$admin->do(q{SELECT pg_reload_conf()});
is(poll_until(q{SELECT to_regclass('presence_history_20000101') IS NULL}, 1), 1,
	'the old day\'s partition is dropped under load');
is($admin->selectrow_array(q{SELECT presence_last_seen('user:old')}), undef, 'its sessions are gone');
sleep 0.3;
open my $fh, '>', $stop or die;
close $fh;
my $sessions = 0;
for (@load) {
	my ($pid, $r) = @$_;
	my $n = <$r>;
	waitpid $pid, 0;
	is($? >> 8, 0, "load writer $pid ended without an error");
	$sessions += $n // 0;
}
cmp_ok($sessions, '>', 0, "the load made $sessions sessions");
is($admin->selectrow_array(q{SELECT count(*) FROM presence_history('h:load', 0, 9223372036854775807)}),
	$sessions, 'every session of the load is in the history');
is($admin->selectrow_array(q{SELECT count(*) FROM pg_inherits WHERE inhparent = 'presence_history'::regclass
                             AND inhrelid::regclass::text <> 'presence_history_default'}),
	2, "today's and tomorrow's partitions remain");
is($admin->selectrow_array(q{SELECT count(*) FROM presence_history_default}), 0,
	'nothing in the default partition');

$admin->do(q{ALTER SYSTEM RESET presence.history_retention});
$admin->do(q{SELECT pg_reload_conf()});
$app->disconnect;
$admin->disconnect;
server_log_ok();
done_testing();
