package service

import (
	"context"
	"slices"

	"github.com/viralityhq/virality/processor"
)

// Creator returns a creator's current record (processor.ReadCreator), on
// the instance that holds partition 0, which keeps the creators' state.
func (s *Service) Creator(_ context.Context, id string) ([]byte, bool, error) {
	owned := s.owned.Load()
	if owned == nil || !slices.Contains(*owned, 0) {
		return nil, false, nil
	}
	return processor.ReadCreator(s.db, id)
}

// RisingCreators returns the last rising-creators list of a region and its
// tick, on the instance that holds partition 0.
func (s *Service) RisingCreators(region string) (processor.CreatorList, int64, bool) {
	g := s.group.Load()
	if g == nil {
		return processor.CreatorList{}, 0, false
	}
	return g.RisingCreators(region)
}
