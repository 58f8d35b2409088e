# A client connection that drops, terminated (pg_terminate_backend) or
# closed abruptly (its client process killed with -9), has its entries'
# leave diffs arrive within 2 x sweep_interval.  Live connections keep theirs.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use List::Util qw(max min sum);
use POSIX ':sys_wait_h';
use PresenceTest;

presence_node();

my $interval = 0.2;
my $target = 2 * $interval;
my $l = PresenceTest::Listener->new;
my $admin = connect_db();

# A live connection whose entries must survive everything below.
my $live = connect_db();
my $live_wid = $live->selectrow_array('SELECT presence_worker_start()');
$live->selectrow_array(q{SELECT presence_track('drop:room:a', 100, 'user:live')});

sub bound_worker_of {
	my ($backend_pid) = @_;
	return $admin->selectrow_array(
		'SELECT worker_id FROM tep_presence_worker WHERE backend_pid = ?', undef, $backend_pid);
}

my %lat;
my @track_sql = (
	q{SELECT presence_track('drop:room:a', 1, 'user:1')},
	q{SELECT presence_track('drop:room:a', 2, 'user:1', 'agent_for', 'agent:x')},
	q{SELECT presence_track('drop:room:b', 1, 'user:1')},
);

for my $round (1 .. 3) {
	for my $how ('terminated', 'killed') {
		# vary where in the tick schedule the drop falls
		$l->pause(rand($interval));
		my ($backend_pid, $child, $c);
		if ($how eq 'terminated') {
			$c = connect_db();
			# explicit registration in one round, implicit (first track) in the others
			$c->do('SELECT presence_worker_start()') if $round == 1;
			$c->do($_) for @track_sql;
			$backend_pid = $c->{pg_pid};
		} else {
			($child, $backend_pid) = spawn_client(@track_sql);
		}
		my $wid = bound_worker_of($backend_pid);
		ok($wid, "$how #$round: connection-bound worker $wid registered");
		my $is_mine = PresenceTest::Listener::match(worker_id => $wid);
		my @joins = $l->collect(sub { $is_mine->($_[0]) && diff_of($_[0])->{kind} eq 'join' }, 3, 3);
		is(scalar @joins, 3, "$how #$round: 3 join diffs");

		my $t0 = time;
		if ($how eq 'terminated') {
			$admin->selectrow_array('SELECT pg_terminate_backend(?)', undef, $backend_pid);
		} else {
			kill 'KILL', $child;
		}
		my @leaves = $l->collect(sub { $is_mine->($_[0]) && diff_of($_[0])->{kind} eq 'leave' }, 3, 5);
		is(scalar @leaves, 3, "$how #$round: 3 leave diffs") or next;
		my $lat = max(map { $_->{t} } @leaves) - $t0;
		push @{ $lat{$how} }, $lat;
		diag(sprintf 'leave latency %s ms (%s)', ms($lat), $how);
		cmp_ok($lat, '<=', $target, "$how #$round: within 2 x sweep_interval ($target s)");
		is_deeply([sort map { diff_of($_)->{topic} . '/' . diff_of($_)->{fd} } @leaves],
			['drop:room:a/1', 'drop:room:a/2', 'drop:room:b/1'], "$how #$round: one leave per entry");
		my $agent = (grep { diff_of($_)->{fd} == 2 } @leaves)[0];
		is(diff_of($agent)->{ekind} . '/' . diff_of($agent)->{agent_id}, 'agent_for/agent:x',
			"$how #$round: the leave carries the entry's fields");
		$l->pause(0.1);
		is($admin->selectrow_array('SELECT count(*) FROM tep_presence_worker WHERE worker_id = ?',
				undef, $wid), 0, "$how #$round: its worker row is gone");
		if ($child) { waitpid $child, 0 }
	}
}

for my $how (sort keys %lat) {
	my @v = @{ $lat{$how} };
	diag(sprintf 'leave latency (%s) over %d samples: min %s ms, mean %s ms, max %s ms',
		$how, scalar @v, ms(min @v), ms(sum(@v) / @v), ms(max @v));
}

my @others = grep { diff_of($_)->{worker_id} eq $live_wid && diff_of($_)->{kind} eq 'leave' } $l->drain;
is(scalar @others, 0, 'no leave diff for the live connection');
is($live->selectrow_array(q{SELECT presence_count('drop:room:a')}), 1, 'the live connection keeps its entry');
is($live->selectrow_array('SELECT presence_worker_stop()'), 1, 'cleanup');
server_log_ok();
done_testing;
