# A shard killed with -9 and restarted: calls on its topics fail while it
# is down, the other shards never stop (a writer through the proxy on
# their topics sees no error, heartbeats go on), and once it is back its
# topics come back as they were, a resync (snapshot) converges, and the
# diffs go on from the snapshot's seq with no gap.
use strict;
use warnings;
use ShardTest;
use Test::More;
use Time::HiRes qw(time sleep);

my $victim = 1;
my $proxy = proxy_dbh();
my @topics = map { "k9:$_" } 1 .. 30;
my $shard_of = shard_of($proxy, @topics);
my @down = grep { $shard_of->{$_} == $victim } @topics;
my @up = grep { $shard_of->{$_} != $victim } @topics;
ok(@down && @up, scalar(@down) . " topics on shard $victim, " . scalar(@up) . ' on the others');

$proxy->do(q{SELECT presence_worker_start('k9', '1 hour')});
$proxy->do('SELECT presence_track(?, 1, ?)', undef, $_, "user:$_") for @topics;
$proxy->do('SELECT presence_track(?, 7, ?)', undef, $_, "user:fd7") for @up[0, 1];
my @listeners = map { listener($_) } 0 .. $ENV{PRESENCE_SHARDS_N} - 1;
my $r = replica_new();
replica_snapshot($r, $proxy, $_) for @topics;
my @before = map { join ',', @{ global_rows($proxy, $_) } } @down;
my %epoch0 = map { $_ => epoch_of($proxy, $_) } @topics;
sub epoch_of { my ($db, $t) = @_; ($db->selectrow_array(q{SELECT presence_snapshot(?) ->> 'epoch'}, undef, $t))[0] }

sub drain {
	for my $l (@listeners) {
		next unless $l;
		replica_apply($r, $_, $shard_of) for poll_diffs($l, 0.05);
	}
}

# A writer on the other shards' topics, for the whole test.
pipe(my $rd, my $wr) or die "pipe: $!";
my $writer = fork // die "fork: $!";
if (!$writer) {
	close $rd;
	my ($ok, $err) = (0, 0);
	my $stop = 0;
	local $SIG{TERM} = sub { $stop = 1 };
	my $db = proxy_dbh();
	$db->do(q{SELECT presence_worker_start('k9-writer', '1 hour')});
	my $i = 0;
	until ($stop) {
		my $t = $up[ $i++ % @up ];
		eval {
			$db->do($i % 2 ? 'SELECT presence_track(?, 2, ?)' : 'SELECT presence_untrack(?, 2)',
				undef, $t, ($i % 2 ? ('writer') : ()));
			1;
		} ? $ok++ : do { $err++; print STDERR "writer: $@" };
		sleep 0.01;
	}
	print $wr "$ok $err\n";
	close $wr;
	child_exit(0);
}
close $wr;

drain() for 1 .. 10;
kill9_shard($victim);
$listeners[$victim] = undef;

# Down: its topics fail, the others answer, heartbeats still reach them.
my $deadline = time + 5;
my $failed;
until ($failed || time > $deadline) {
	$failed = !eval { $proxy->selectrow_array('SELECT presence_count_global(?)', undef, $down[0]); 1 };
	sleep 0.1 unless $failed;
}
ok($failed, "a call on a topic of shard $victim fails while it is down");
my $others = eval {
	$proxy->do(q{SELECT presence_set_status(?, 1, 'busy', 'shard down')}, undef, $_) for @up;
	1;
};
ok($others, 'calls on the other shards\' topics work meanwhile') or diag $@;
my ($hb) = eval { $proxy->selectrow_array(q{SELECT presence_heartbeat('k9')}) };
is($hb, 1, 'presence_heartbeat with a shard down: true (a WARNING names it), the others refreshed');
my ($by_fd) = eval { $proxy->selectrow_array(q{SELECT presence_untrack_by_fd(7, 'k9')}) };
is($by_fd, 2, 'presence_untrack_by_fd with a shard down: done on the others (a WARNING names it)');
my $bad = eval { $proxy->do(q{SELECT presence_untrack_by_fd(-1, 'k9')}); 'no error' } // $proxy->state;
is($bad, '22023', 'bad input with a shard down is still the shards\' error (22023), not a WARNING');
ok(!eval { $proxy->do(q{SELECT presence_worker_start('k9-late', '1 hour')}); 1 },
	'presence_worker_start with a shard down fails (it must reach every shard)');
drain() for 1 .. 10;

ok(start_shard($victim), "shard $victim restarted");
$listeners[$victim] = listener($victim, timeout => 30);
# The proxy's pooled connection to the shard died with it: a client
# retries until the first call after the restart gets through.
my $back;
$deadline = time + 30;
until ($back || time > $deadline) {
	$back = eval { replica_snapshot($r, $proxy, $_) for @down; 1 };
	sleep 0.2 unless $back;
}
ok($back, "resync: snapshots of shard $victim\'s topics through the proxy");
my @after = map { join ',', @{ global_rows($proxy, $_) } } @down;
is_deeply(\@after, \@before, "shard $victim\'s topics came back with their entries");
my @same = grep { epoch_of($proxy, $_) eq $epoch0{$_} } @down;
is_deeply(\@same, [], "shard $victim\'s topics have a new epoch (its restart began a new history)");
my @changed = grep { epoch_of($proxy, $_) ne $epoch0{$_} } @up;
is_deeply(\@changed, [], 'the other shards\' topics keep their epoch');

# Diffs go on from the snapshot's seq, on every shard.
$proxy->do(q{SELECT presence_set_status(?, 1, 'busy', 'back')}, undef, $_) for @topics;
kill 'TERM', $writer;
my $line = <$rd>;
waitpid $writer, 0;
my ($wok, $werr) = split ' ', ($line // '0 1');
ok($wok > 0 && $werr == 0, "the writer on the other shards never failed ($wok calls, $werr errors)");

my $behind;
$deadline = time + 60;
while (time < $deadline) {
	drain() for 1 .. 5;
	$behind = grep {
		my ($s) = $proxy->selectrow_array(q{SELECT (presence_snapshot(?) ->> 'seq')::bigint}, undef, $_);
		$s != $r->{topics}{$_}{seq}
	} @topics;
	last unless $behind;
}
is($behind, 0, 'every topic\'s replica caught up');
is_deeply($r->{problems}, [], 'no seq gap on any shard, every diff on its topic\'s shard');
my @wrong = grep { join("\n", @{ replica_rows($r, $_) }) ne join("\n", @{ global_rows($proxy, $_) }) } @topics;
is_deeply(\@wrong, [], 'every topic converged: replica = presence_list_global');

$proxy->do(q{SELECT presence_worker_stop('k9')});
$proxy->do(q{SELECT presence_worker_stop('k9-writer')});
done_testing();
