# A leased gateway that stops heartbeating leaves on every shard (the
# shards' background workers prune it when its lease runs out), while one
# that keeps heartbeating through the proxy stays on every shard.
use strict;
use warnings;
use ShardTest;
use Test::More;
use Time::HiRes qw(time sleep);

my $proxy = proxy_dbh();
my @topics = map { "lease:$_" } 1 .. 30;
my $shard_of = shard_of($proxy, @topics);
my %on;
$on{ $shard_of->{$_} }++ for @topics;
is(scalar(keys %on), $ENV{PRESENCE_SHARDS_N}, 'the topics are on every shard');

my @listeners = map { listener($_) } 0 .. $ENV{PRESENCE_SHARDS_N} - 1;
$proxy->do(q{SELECT presence_worker_start('gone', '2 seconds')});
$proxy->do(q{SELECT presence_worker_start('beating', '2 seconds')});
$proxy->do(q{SELECT presence_track(?, 1, 'user:1', worker_id => 'gone')}, undef, $_) for @topics;
$proxy->do(q{SELECT presence_track(?, 2, 'user:2', worker_id => 'beating')}, undef, $_) for @topics;

# 'gone' stops heartbeating now; 'beating' heartbeats every 300 ms.
my (%leaves, $left, $beats_ok);
$beats_ok = 1;
my $deadline = time + 60;
while (time < $deadline) {
	my ($alive) = $proxy->selectrow_array(q{SELECT presence_heartbeat('beating')});
	$beats_ok &&= $alive;
	for my $l (@listeners) {
		for my $d (poll_diffs($l, 0.1)) {
			$leaves{ $d->{shard} }++ if $d->{kind} eq 'leave' && $d->{worker_id} eq 'gone';
		}
	}
	($left) = $proxy->selectrow_array(q{SELECT count(*) FROM unnest(?::text[]) t,
	                                     presence_list_global(t) e WHERE e.worker_id = 'gone'},
		undef, \@topics);
	last if $left == 0 && (sum(values %leaves) // 0) == @topics;
	sleep 0.2;
}
is($left, 0, "the lapsed worker's entries are gone from all 30 topics");
is_deeply(\%leaves, \%on, 'one leave diff per entry, on each topic\'s shard');
ok($beats_ok, 'the heartbeating worker\'s heartbeats all returned true');
my ($kept) = $proxy->selectrow_array(q{SELECT count(*) FROM unnest(?::text[]) t,
                                       presence_list_global(t) e WHERE e.worker_id = 'beating'},
	undef, \@topics);
is($kept, 30, 'the heartbeating worker kept its entries on every shard');
my $err = eval { $proxy->do(q{SELECT presence_heartbeat('gone')}); '' } // $proxy->state;
is($err, '22023', 'the lapsed worker is unknown on every shard (22023)');
$proxy->do(q{SELECT presence_worker_stop('beating')});

sub sum { my $s; $s += $_ for @_; $s }
done_testing();
