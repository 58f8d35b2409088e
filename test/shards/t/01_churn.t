# Cross-shard exactness: writers through the proxy, a listener on every
# shard; per topic, the snapshot taken through the proxy plus the diffs
# with a greater seq equal presence_list_global through the proxy, with no
# seq gap, every diff on the shard presence_shard names.
use strict;
use warnings;
use ShardTest;
use Test::More;
use Time::HiRes qw(time sleep);

my $proxy = proxy_dbh();
my @topics = map { "churn:$_" } 1 .. 24;
my $shard_of = shard_of($proxy, @topics);
my %per = map { $_ => 0 } 0 .. $ENV{PRESENCE_SHARDS_N} - 1;
$per{$_}++ for values %$shard_of;
ok(!grep({ !$_ } values %per), 'the topics are on every shard: '
	  . join(', ', map { "shard $_: $per{$_}" } sort keys %per));

# Listeners first, then the snapshots: a diff committed in between is in
# both and applied once (seq <= the snapshot's).
my @listeners = map { listener($_) } 0 .. $ENV{PRESENCE_SHARDS_N} - 1;
my $r = replica_new();
replica_snapshot($r, $proxy, $_) for @topics;

my $writers = 4;
my $ops = 250;
my @pids;
for my $w (1 .. $writers) {
	my $pid = fork // die "fork: $!";
	if (!$pid) {
		my $code = eval {
			my $db = proxy_dbh();
			my $id = "churn-w$w";
			$db->do(q{SELECT presence_worker_start(?, '1 hour')}, undef, $id);
			srand($w);
			for (1 .. $ops) {
				my $t = $topics[ int rand @topics ];
				my $fd = 1 + int rand 4;
				my $op = rand;
				if ($op < 0.45) {
					$db->do('SELECT presence_track(?, ?, ?)', undef, $t, $fd, "user:$fd");
				} elsif ($op < 0.7) {
					$db->do('SELECT presence_untrack(?, ?)', undef, $t, $fd);
				} elsif ($op < 0.9) {
					$db->do(q{SELECT presence_set_status(?, ?, 'busy', ?)}, undef, $t, $fd, "op $_");
				} elsif ($op < 0.97) {
					$db->do('SELECT presence_untrack_by_fd(?)', undef, $fd);
				} else {
					$db->do('SELECT presence_clear()');
				}
			}
			0;
		} // do { print STDERR "writer $w: $@"; 1 };
		child_exit($code);
	}
	push @pids, $pid;
}

my %alive = map { $_ => 1 } @pids;
my $deadline = time + 300;
my $diffs = 0;
sub drain {
	my ($timeout) = @_;
	my $n = 0;
	for my $l (@listeners) {
		for my $d (poll_diffs($l, $timeout)) {
			replica_apply($r, $d, $shard_of);
			$n++;
		}
	}
	$diffs += $n;
	return $n;
}
my $writer_failures = 0;
while (%alive && time < $deadline) {
	drain(0.05);
	for my $pid (keys %alive) {
		next unless waitpid($pid, POSIX::WNOHANG()) == $pid;
		$writer_failures++ if $?;
		delete $alive{$pid};
	}
}
is($writer_failures, 0, "$writers writers, $ops calls each through the proxy, no error");

# Until every topic's replica is at the seq a fresh snapshot has.
my $behind;
while (time < $deadline) {
	drain(0.2);
	$behind = grep {
		my ($s) = $proxy->selectrow_array(q{SELECT (presence_snapshot(?) ->> 'seq')::bigint}, undef, $_);
		$s != $r->{topics}{$_}{seq}
	} @topics;
	last unless $behind;
}
is($behind, 0, "every topic's diffs arrived ($diffs diffs)");
is_deeply($r->{problems}, [], 'no seq gap, every diff on its topic\'s shard');
my @wrong = grep { join("\n", @{ replica_rows($r, $_) }) ne join("\n", @{ global_rows($proxy, $_) }) } @topics;
is_deeply(\@wrong, [], 'snapshot + diffs = presence_list_global through the proxy, for all 24 topics');

my $left = 0;
$left += $proxy->selectrow_array('SELECT presence_worker_stop(?)', undef, "churn-w$_") for 1 .. $writers;
drain(0.5) for 1 .. 3;
my @nonempty = grep { @{ replica_rows($r, $_) } } @topics;
is_deeply(\@nonempty, [], "after presence_worker_stop ($left entries left), every replica is empty");

done_testing();
