# A leased worker that stops heartbeating is pruned within lease +
# sweep_interval (not before its lease ran out); one that keeps
# heartbeating is not.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use PresenceTest;

presence_node();

my $interval = 0.2;
my $lease = 1.0;
# The worker prunes at its first tick after the lease ran out; the leave
# diffs then still have to be committed and delivered to the listener.
my $delivery = 0.1;
my $l = PresenceTest::Listener->new;
my $pool = connect_db();    # a pooled connection acting for both workers

sub entries_of {
	my ($wid) = @_;
	return $pool->selectrow_array('SELECT count(*) FROM tep_presence WHERE worker_id = ?', undef, $wid);
}

my $t_last;    # lease-dead's last sign of life: its presence_worker_start
for my $wid ('lease-live', 'lease-dead') {
	is($pool->selectrow_array(q{SELECT presence_worker_start(?, '1 second')}, undef, $wid), $wid,
		"presence_worker_start('$wid', '1 second')");
	$t_last = time;
	for my $fd (1 .. 2) {
		$pool->selectrow_array('SELECT presence_track(?, ?, ?, ?, ?, ?)', undef,
			'lease:room', $fd, "user:$fd", 'human', '', $wid);
	}
}
my ($heartbeats, $hb_false, $t_hb) = (0, 0, 0);
my $heartbeat = sub {
	my $alive = $pool->selectrow_array(q{SELECT presence_heartbeat('lease-live')});
	$t_hb = time;
	$heartbeats++;
	$hb_false++ unless $alive;
};
$heartbeat->();

my $dead_leaves = PresenceTest::Listener::match(kind => 'leave', worker_id => 'lease-dead');
my $live_leaves = PresenceTest::Listener::match(kind => 'leave', worker_id => 'lease-live');

# Heartbeat lease-live every 300 ms for 3.5 s while lease-dead lapses.
my @dead;
my $end = time + 3.5;
while (time < $end) {
	$l->pause(0.3);
	$heartbeat->();
	push @dead, $l->collect($dead_leaves, 2 - @dead, 0);
}
$l->pause(0.2);
push @dead, $l->collect($dead_leaves, 2 - @dead, 0);

is(scalar @dead, 2, 'the lapsed lease: 2 leave diffs') and do {
	my $first = $dead[0]{t} - $t_last;
	my $last = $dead[-1]{t} - $t_last;
	diag(sprintf 'lease prune latency %s ms after the last heartbeat (lease %s ms + sweep_interval %s ms)',
		ms($last), ms($lease), ms($interval));
	cmp_ok($first, '>=', $lease - 0.05, 'not pruned before the lease ran out');
	cmp_ok($last, '<=', $lease + $interval + $delivery, "pruned within lease + sweep_interval (+ $delivery s delivery)");
};
is(entries_of('lease-dead'), 0, 'the lapsed worker has no entries left');
is($pool->selectrow_array(q{SELECT count(*) FROM tep_presence_worker WHERE worker_id = 'lease-dead'}), 0,
	'the lapsed worker row is gone');

my @live = $l->collect($live_leaves, 1, 0);
is(scalar @live, 0, 'no leave diff for the worker that keeps heartbeating');
is(entries_of('lease-live'), 2, 'it keeps both entries');
cmp_ok($heartbeats, '>=', 10, "it heartbeat $heartbeats times");
is($hb_false, 0, 'every heartbeat found it alive (returned true)');

# It lapses once the heartbeats stop.
my @late = $l->collect($live_leaves, 2, $lease + $interval + 1);
is(scalar @late, 2, 'after its heartbeats stop it is pruned too') and do {
	my $first = $late[0]{t} - $t_hb;
	my $last = $late[-1]{t} - $t_hb;
	diag(sprintf 'lease prune latency %s ms after the last heartbeat', ms($last));
	cmp_ok($first, '>=', $lease - 0.05, '  not before the lease (renewed by the last heartbeat) ran out');
	cmp_ok($last, '<=', $lease + $interval + $delivery, "  within lease + sweep_interval (+ $delivery s delivery) of the last heartbeat");
};
server_log_ok();
done_testing;
