# Tep-written heartbeat rows (worker_id, last_seen_ts, nothing else) past
# presence.worker_ttl are pruned with leave diffs; rows kept fresh are not;
# entries whose worker row disappears are pruned too.  Entries are written
# Tep-style, directly into tep_presence.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use PresenceTest;

presence_node();

my $interval = 0.2;
my $l = PresenceTest::Listener->new;
my $tep = connect_db();    # plays a Tep app with its PG mirror

sub tep_heartbeat {
	my ($wid, $ts) = @_;
	$tep->do(q{INSERT INTO tep_presence_worker (worker_id, last_seen_ts) VALUES (?, ?)
	           ON CONFLICT (worker_id) DO UPDATE SET last_seen_ts = excluded.last_seen_ts},
		undef, $wid, $ts);
}

sub tep_track {
	my ($wid, $topic, $fd) = @_;
	$tep->do(q{INSERT INTO tep_presence (worker_id, topic, fd, principal_id, kind, agent_id,
	               since_ts, status_state, status_note, status_until)
	           VALUES (?, ?, ?, ?, 'human', '', ?, 'available', '', 0)
	           ON CONFLICT (worker_id, topic, fd) DO UPDATE SET principal_id = excluded.principal_id},
		undef, $wid, $topic, $fd, "user:$fd", now_s());
}

sub count_of {
	my ($wid) = @_;
	return $tep->selectrow_array('SELECT count(*) FROM tep_presence WHERE worker_id = ?', undef, $wid);
}

# 1. A row already older than the default worker_ttl (90 s).
$tep->begin_work;
tep_heartbeat('tep-old', now_s() - 100);
tep_track('tep-old', 'tep:room', $_) for 1 .. 3;
$tep->commit;
my $t0 = time;
my @old = $l->collect(PresenceTest::Listener::match(kind => 'leave', worker_id => 'tep-old'), 3, 3);
is(scalar @old, 3, 'a Tep worker row 100 s old (worker_ttl 90 s): 3 leave diffs') and do {
	my $lat = $old[-1]{t} - $t0;
	diag(sprintf 'tep stale-row prune latency %s ms after commit', ms($lat));
	cmp_ok($lat, '<=', 2 * $interval, '  within 2 x sweep_interval of the commit');
};
is(count_of('tep-old'), 0, '  no entries left');
is($tep->selectrow_array(q{SELECT count(*) FROM tep_presence_worker WHERE worker_id = 'tep-old'}), 0,
	'  its worker row is gone');
is(diff_of($old[0])->{seq}, 1, '  leave diffs of rows written without diffs start the topic at seq 1');

# 2. worker_ttl = 2 s (ALTER SYSTEM + reload).
set_gucs($tep, 'presence.worker_ttl' => '2s');
$l->pause(3 * $interval);
my $ttl = 2;

$tep->begin_work;
my $last_seen = now_s();
tep_heartbeat('tep-fresh', $last_seen);
tep_heartbeat('tep-beating', $last_seen);
tep_track('tep-fresh', 'tep:room', $_) for 1 .. 2;
tep_track('tep-beating', 'tep:room', $_) for 1 .. 2;
$tep->commit;
my $t_ins = time;

my $fresh = PresenceTest::Listener::match(kind => 'leave', worker_id => 'tep-fresh');
my $beating = PresenceTest::Listener::match(kind => 'leave', worker_id => 'tep-beating');
my @fresh;
my $end = time + $ttl + 1 + $interval + 1;
while (time < $end) {
	$l->pause(0.5);
	tep_heartbeat('tep-beating', now_s());
	push @fresh, $l->collect($fresh, 2 - @fresh, 0);
}
is(scalar @fresh, 2, 'worker_ttl 2 s: the row that stopped heartbeating is pruned (2 leave diffs)') and do {
	my $age_first = $fresh[0]{t} - $t_ins;
	my $late = $fresh[-1]{t} - ($last_seen + $ttl);
	diag(sprintf 'tep ttl prune: %s ms after insert, %s ms after last_seen_ts + worker_ttl (last_seen_ts is whole seconds)',
		ms($fresh[-1]{t} - $t_ins), ms($late));
	cmp_ok($age_first, '>=', $ttl - 0.05, '  not before worker_ttl passed');
	cmp_ok($late, '<=', 1 + $interval + 0.1, '  within worker_ttl + 1 s (whole seconds) + sweep_interval (+ 0.1 s delivery)');
};
is(scalar($l->collect($beating, 1, 0)), 0, 'the row kept fresh by Tep heartbeats is not pruned');
is(count_of('tep-beating'), 2, '  it keeps its entries');

# 3. Tep's own prune (or a shutdown) deletes the worker row: orphans go.
$tep->do(q{DELETE FROM tep_presence_worker WHERE worker_id = 'tep-beating'});
my $t_del = time;
my @orph = $l->collect($beating, 2, 3);
is(scalar @orph, 2, 'entries left without a worker row are pruned (2 leave diffs)') and do {
	my $lat = $orph[-1]{t} - $t_del;
	diag(sprintf 'orphan prune latency %s ms', ms($lat));
	cmp_ok($lat, '<=', 2 * $interval, '  within 2 x sweep_interval');
};

reset_gucs($tep, 'presence.worker_ttl');
$l->pause(2 * $interval);
is($tep->selectrow_array(q{SELECT count(*) FROM tep_presence WHERE topic = 'tep:room'}), 0, 'tep:room is empty');
server_log_ok();
done_testing;
